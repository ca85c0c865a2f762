"""AuditEvents (FHIR R4 auditevent.html): content, masking, append-only storage."""

from __future__ import annotations

import base64
import json

from sqlalchemy import select

from fhir_gateway.audit import audit_event_for, masked_query, write_audit_events
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import resource
from tests.consent.support import caller

SAAD = "Organization/saad"


def test_read_event_names_client_resource_person_and_consent() -> None:
    event = audit_event_for(
        caller(SAAD, purpose="TREAT"), "read", "Task", "t1", "p1", True, "Consent/c1", None
    )
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    assert (event["action"], event["outcome"]) == ("R", "0")
    agent = event["agent"][0]
    assert agent["requestor"] is True
    assert agent["who"] == {
        "identifier": {"system": "urn:fhir-gateway:client-id", "value": "client-test"},
        "reference": SAAD,
    }
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    whats = [e.get("what", {}).get("reference") for e in event["entity"]]
    assert whats == ["Task/t1", "Patient/p1", "Consent/c1"]
    assert event["source"]["observer"] == {"display": "fhir-gateway"}


def test_denied_search_event_masks_personal_query_values() -> None:
    event = audit_event_for(
        caller(SAAD),
        "search-type",
        "Patient",
        None,
        None,
        False,
        "default policy: opt-in",
        "name=Dupont&birthdate=1950-01-01&_count=10",
    )
    assert (event["action"], event["outcome"]) == ("E", "4")
    query = next(e for e in event["entity"] if "query" in e)
    text = base64.b64decode(query["query"]).decode()
    assert "Dupont" not in text
    assert "1950" not in text
    assert "_count=10" in text
    policy = next(e for e in event["entity"] if "detail" in e)
    assert policy["detail"] == [{"type": "decided-by", "valueString": "default policy: opt-in"}]
    assert masked_query("subject:Patient.family=X&status=ready") == "subject:Patient.family=***&status=ready"


def test_break_glass_is_surfaced() -> None:
    event = audit_event_for(
        caller(SAAD, break_glass="chute, patient inconscient"),
        "read",
        "Patient",
        "p1",
        "p1",
        True,
        "break-glass",
        None,
    )
    assert {
        "system": "urn:fhir-gateway:audit",
        "code": "break-glass",
        "display": "Break-glass access",
    } in event["subtype"]
    assert event["meta"]["tag"][0]["code"] == "break-glass"
    assert any(c["code"] == "BTG" for c in event["purposeOfEvent"][0]["coding"])
    details = [d for e in event["entity"] for d in e.get("detail", [])]
    assert {"type": "break-glass-reason", "valueString": "chute, patient inconscient"} in details
    assert event["entity"][0]["role"]["code"] == "1"  # the Patient read is the person


def test_write_audit_events_stores_append_only_rows(consent_db: Database) -> None:
    events = [
        audit_event_for(caller(SAAD), "read", "Task", "t1", "p1", True, "Consent/c1", None),
        audit_event_for(caller(SAAD), "search-type", "Organization", None, None, True, None, "name=x"),
    ]
    write_audit_events(consent_db, events)
    with consent_db.transaction() as conn:
        rows = conn.execute(select(resource).where(resource.c.res_type == "AuditEvent")).all()
    by_id = {r.res_id: r for r in rows}
    assert set(by_id) == {e["id"] for e in events}
    first = by_id[events[0]["id"]]
    assert first.patient_id == "p1"
    assert first.version == 1
    assert json.loads(first.content)["meta"]["versionId"] == "1"
    assert by_id[events[1]["id"]].patient_id is None
