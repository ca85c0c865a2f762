"""The AuditEvent index shortcut (fhir_gateway/audit/index_rows.py) against the generic
extraction (search.indexing.extract_index_rows): the same rows for every kind of event the
gateway writes, and None (the generic path) for any other shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.audit.events import (
    audit_event_for,
    audit_id,
    audit_record,
    event_of,
    is_record,
    record_kind,
)
from fhir_gateway.audit.grouped import GroupedWrites, transaction_writes
from fhir_gateway.audit.index_rows import audit_index_rows
from fhir_gateway.audit.store import prepare_audit_events
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.search.indexing import Rows, extract_index_rows
from fhir_gateway.storage.audit_refs import with_audit_refs
from fhir_gateway.storage.tables import INDEX_TABLES, audit_terms, resource

INTERACTIONS = [
    "read", "vread", "search-type", "search-system", "create", "update", "patch", "delete",
    "history-instance", "history-type", "history-system", "notify", "operation", "transaction", "batch",
]  # fmt: skip
ids = st.text("abcdef0123456789-.", min_size=1, max_size=20)
types = st.sampled_from(["Task", "Patient", "CarePlan", "Consent", "Organization", None])
# what one access of a request varies in (``audit_event_for``'s arguments and the caller's)
ACCESSES: dict[str, st.SearchStrategy[Any]] = {
    "interaction": st.sampled_from(INTERACTIONS),
    "res_type": types,
    "res_id": st.one_of(st.none(), ids),
    "patient_id": st.one_of(st.none(), ids),
    "ok": st.booleans(),
    "decided_by": st.sampled_from([None, "Consent/c-1", "trusted client", "policy: deny by default"]),
    "query": st.sampled_from(
        [None, "", "patient=Patient/p1&status=requested,accepted", "name=Dupont&_count=20"]
    ),
    # who acts for the client: a professional, or a person using a patient-facing app
    "practitioner": st.sampled_from([None, "Practitioner/pr-1", "https://annuaire.example/fhir/Patient/p9"]),
    "break_glass": st.sampled_from([None, "urgence vitale, personne inconsciente"]),
}


def _stamped(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as prepare_audit_events stores it (meta stamps of version 1)."""
    return {
        **event,
        "meta": {**(event.get("meta") or {}), "versionId": "1", "lastUpdated": "2026-11-26T17:00:00.123Z"},
    }


def _sorted(rows: Rows | None) -> dict[str, list[tuple[tuple[str, str], ...]]]:
    assert rows is not None
    return {
        kind: sorted(tuple(sorted((k, str(v)) for k, v in row.items())) for row in found)
        for kind, found in rows.items()
    }


def _same_as_generic(event: dict[str, Any]) -> None:
    body = _stamped(event)
    assert _sorted(audit_index_rows(body)) == _sorted(extract_index_rows(body))


@settings(max_examples=300, deadline=None)
@given(
    **ACCESSES,
    outcome=st.sampled_from([None, "8"]),
    organization=st.sampled_from([None, "Organization/saad-1"]),
    purpose=st.sampled_from(["COC", "TREAT", "HOPERAT"]),
)
def test_every_request_event_gets_the_generic_rows(
    interaction: str,
    res_type: str | None,
    res_id: str | None,
    patient_id: str | None,
    ok: bool,
    decided_by: str | None,
    query: str | None,
    outcome: str | None,
    organization: str | None,
    practitioner: str | None,
    break_glass: str | None,
    purpose: str,
) -> None:
    access = AccessContext(
        "client-1",
        (),
        organization=organization,
        practitioner=practitioner,
        break_glass=break_glass,
        purpose=purpose,
    )
    event = audit_event_for(
        access, interaction, res_type, res_id, patient_id, ok, decided_by, query, outcome=outcome
    )
    _same_as_generic(event)


def test_the_person_as_the_resource_read() -> None:
    access = AccessContext("client-1", (), organization="Organization/o1")
    _same_as_generic(audit_event_for(access, "read", "Patient", "p1", "p1", True, "Consent/c1", None))


@pytest.mark.parametrize(
    "grouped",
    [GroupedWrites("import-partner", "Partner file import"), transaction_writes()],
    ids=["import", "transaction"],
)
def test_grouped_events_get_the_generic_rows(grouped: GroupedWrites) -> None:
    for n in range(5):
        grouped.add("create", "Task", f"t{n}", "p1", "Consent/c1")
    grouped.add("update", "Patient", "p1", "p1", "Consent/c1")
    grouped.add("create", "Organization", "o9", None, "trusted client")
    events = grouped.drain(AccessContext("importer", (), organization="Organization/o1"))
    assert len(events) == 3
    for event in events:
        _same_as_generic(event)


def test_other_shapes_go_the_generic_way() -> None:
    access = AccessContext("client-1", (), organization="Organization/o1")
    base = audit_event_for(access, "read", "Task", "t1", "p1", True, "Consent/c1", None)
    named_agent = {**base, "agent": [{**base["agent"][0], "name": "Dr Martin"}]}
    named_entity = {**base, "entity": [{**base["entity"][0], "name": "dossier"}]}
    long_code = {**base, "subtype": [{"system": "urn:x", "code": "x" * 300}]}
    other_element = {**base, "text": {"status": "generated", "div": "<div/>"}}
    for event in (named_agent, named_entity, long_code, other_element):
        assert audit_index_rows(_stamped(event)) is None
    prepared = prepare_audit_events([named_agent])  # still indexed, the generic way
    names = {row[2:4] for table, rows in prepared.parts if table is INDEX_TABLES["string"] for row in rows}
    assert ("agent-name", "dr martin") in names


@settings(max_examples=100, deadline=None)
@given(**ACCESSES)
def test_a_record_makes_the_event_the_request_would_have_made(
    interaction: str,
    res_type: str | None,
    res_id: str | None,
    patient_id: str | None,
    ok: bool,
    decided_by: str | None,
    query: str | None,
    practitioner: str | None,
    break_glass: str | None,
) -> None:
    """A REST unit keeps its accesses as records (``audit_record``), made into AuditEvents by
    the writer (``event_of``), even after the JSON trip to the writer process."""
    access = AccessContext(
        "client-1",
        (),
        organization="Organization/o1",
        practitioner=practitioner,
        break_glass=break_glass,
        purpose="TREAT",
    )
    args = (interaction, res_type, res_id, patient_id, ok, decided_by, query)
    record = orjson.loads(orjson.dumps(audit_record(access, *args)))
    assert is_record(record)
    event = event_of(record)
    expected = audit_event_for(access, *args, recorded=datetime.fromtimestamp(record[1], UTC))
    assert event == {**expected, "id": record[0]}
    assert audit_id(record) == record[0]


def _token_terms(item: Any) -> list[Any]:
    """The token terms ``prepare_audit_events`` stores for ``item`` (the ``audit_terms`` rows)."""
    prepared = prepare_audit_events([item])
    return [row[1] for table, rows in prepared.parts if table is audit_terms for row in rows]


ORGANIZATIONS = [None, "Organization/saad-1", "https://annuaire.example/Organization/o9"]


@st.composite
def _two_of_one_kind(draw: st.DrawFn) -> tuple[list[Any], list[Any]]:
    """Two access records of one kind (``events.record_kind``) differing in everything the kind
    leaves out (ids, person, decider, query, caller)."""
    a = draw(st.fixed_dictionaries(ACCESSES))
    other_id, other_person = draw(ids), draw(ids)
    other_decider = draw(st.sampled_from(["Consent/c-2", "default policy: care-team-opt-out"]))
    other_query = draw(st.sampled_from(["", "code=x", "_count=5"]))
    organization = draw(st.sampled_from(ORGANIZATIONS))
    args = (
        a["interaction"],
        a["res_type"],
        a["res_id"],
        a["patient_id"],
        a["ok"],
        a["decided_by"],
        a["query"],
    )
    caller = AccessContext("client-1", (), organization="Organization/o1", break_glass=a["break_glass"])
    first = audit_record(caller, *args)
    same_person = (a["res_type"], a["res_id"]) == ("Patient", a["patient_id"])
    other_caller = AccessContext(
        "client-2",
        (),
        organization=organization,
        practitioner=a["practitioner"],
        break_glass=a["break_glass"],
    )
    other = audit_record(
        other_caller,
        a["interaction"],
        a["res_type"],
        other_id if a["res_id"] else a["res_id"],
        (other_id if same_person else f"{other_person}-p") if a["patient_id"] else a["patient_id"],
        a["ok"],
        other_decider if a["decided_by"] else a["decided_by"],
        other_query if a["query"] is not None else None,
    )
    assert record_kind(other) == record_kind(first)
    return first, other


@settings(max_examples=200, deadline=None)
@given(records=_two_of_one_kind())
def test_records_of_one_kind_store_the_same_terms_as_their_events(
    records: tuple[list[Any], list[Any]],
) -> None:
    """An access record's token terms are looked up by its kind (``events.record_kind``) once a
    record of that kind was stored: they are those its own event gets, for a record differing in
    everything its kind leaves out (ids, person, decider, query, caller)."""
    first, other = records
    _token_terms(first)  # its kind's terms are kept
    assert _token_terms(other) == _token_terms(event_of(other))  # an event is never looked up by kind


def _rows_of(parts: Any, table: Any) -> list[Any]:
    return [tuple(row) for found, rows in parts for row in rows if found is table]


@settings(max_examples=200, deadline=None)
@given(records=_two_of_one_kind())
def test_for_postgresql_a_record_of_a_known_kind_gets_its_whole_audit_terms_row_at_once(
    records: tuple[list[Any], list[Any]],
) -> None:
    """``refs_in_terms``: once a record of its kind was stored, a record's event gets the
    ``audit_terms`` row (terms, reference keys, ``recorded`` range) that
    ``storage.audit_refs.with_audit_refs`` makes of the index rows of the same event stored as
    an AuditEvent, and no index rows at all."""
    first, other = records
    prepare_audit_events([first], refs_in_terms=True)  # its kind's terms are kept
    direct = prepare_audit_events([other], refs_in_terms=True)
    moved = with_audit_refs(prepare_audit_events([event_of(other)]).parts)  # an event: the index rows
    assert _rows_of(direct.parts, audit_terms) == _rows_of(moved, audit_terms)
    assert [table for table, rows in direct.parts if rows] == [resource, audit_terms]
    assert _rows_of(direct.parts, resource)[0][:2] == ("AuditEvent", other[0])
