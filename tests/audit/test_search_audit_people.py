"""A search is audited once per person whose data it answered (IHE BALP "Query"; FHIR R4
auditevent.html): each event names its person (entity role Patient) and carries the query, so
a person's own audit trail (``AuditEvent?patient=``, a patient-context token) shows every
search and `_include` that returned their data, and never the other persons answered with them
(``fhir.context.Ctx.audit_people``; partner exports: tests/mappings/test_http.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.consent.support import consent, provision
from tests.operations.support import person, put

FHIR = {"Content-Type": "application/fhir+json"}
PARTNER = "Organization/saad-search"


def _person(fhir: TestClient, pid: str, tasks: int = 1) -> None:
    """``pid`` with ``tasks`` Tasks owned by the partner, and a CarePlan (tests/operations/support.py)."""
    person(fhir, pid, tasks, owner=PARTNER)


def _searches(fhir: TestClient, of: str = "Task", **params: str) -> list[dict[str, Any]]:
    """The stored AuditEvents of searches of type ``of``, as the trusted auditor finds them (its
    own searches of AuditEvents are audited too, per person, and left out)."""
    bundle = fhir.get("/fhir/AuditEvent", params={"subtype": "search-type", "_count": "100", **params}).json()
    found = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    return [e for e in found if _query(e).startswith(f"{of}?")]


def _persons(event: dict[str, Any]) -> list[str]:
    return [
        e["what"]["reference"]
        for e in event["entity"]
        if e.get("role", {}).get("code") == "1" and "what" in e  # object-role 1: Patient
    ]


def _query(event: dict[str, Any]) -> str:
    (query,) = [e["query"] for e in event["entity"] if "query" in e]
    return base64.b64decode(query).decode()


def test_a_search_answering_two_persons_is_two_events_each_naming_one(fhir: TestClient) -> None:
    _person(fhir, "sa-a", tasks=2)
    _person(fhir, "sa-b")
    bundle = fhir.get("/fhir/Task", params={"status": "requested", "_count": "10"}).json()
    assert len(bundle["entry"]) == 3
    events = _searches(fhir)
    assert sorted(p for e in events for p in _persons(e)) == ["Patient/sa-a", "Patient/sa-b"]
    assert all(len(_persons(e)) == 1 for e in events)
    assert {_query(e) for e in events} == {"Task?status=requested&_count=10"}
    assert {e["entity"][0]["what"]["reference"] for e in events} == {"Patient/sa-a", "Patient/sa-b"}
    (of_a,) = _searches(fhir, patient="Patient/sa-a")  # the person's events are found by the person
    assert _persons(of_a) == ["Patient/sa-a"]


def test_a_search_answering_no_one_is_one_event_naming_no_one(fhir: TestClient) -> None:
    _person(fhir, "sa-c")
    assert fhir.get("/fhir/Task", params={"status": "cancelled"}).json()["total"] == 0
    assert fhir.get("/fhir/Organization", params={"name": "x"}).status_code == 200
    events = [*_searches(fhir), *_searches(fhir, "Organization")]
    assert len(events) == 2
    assert all(_persons(e) == [] for e in events)


def test_the_persons_of_included_resources_are_audited_too(fhir: TestClient) -> None:
    _person(fhir, "sa-d", tasks=0)
    _person(fhir, "sa-e", tasks=0)
    task = {"resourceType": "Task", "id": "sa-e-t0", "status": "requested", "intent": "order"}
    put(fhir, {**task, "for": {"reference": "Patient/sa-e"}, "focus": {"reference": "Patient/sa-d"}})
    bundle = fhir.get("/fhir/Task", params={"_id": "sa-e-t0", "_include": "Task:focus"}).json()
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]
    assert sorted(p for e in _searches(fhir) for p in _persons(e)) == ["Patient/sa-d", "Patient/sa-e"]


def test_a_person_sees_a_partners_search_of_their_data_and_no_one_elses(
    fhir: TestClient, make_client: ClientFactory
) -> None:
    for pid in ("sa-p1", "sa-p2", "sa-p3"):
        _person(fhir, pid)
    for pid in ("sa-p1", "sa-p2"):  # sa-p3 has not consented: the partner never gets their Task
        put(fhir, {**consent(pid, provision("permit", actors=[PARTNER])), "id": f"c-{pid}"})
    partner = make_client("system/*.rs", organization=PARTNER)
    found = partner.get("/fhir/Task", params={"owner": PARTNER}).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == ["sa-p1-t0", "sa-p2-t0"]

    def seen_by(pid: str) -> list[dict[str, Any]]:
        person = make_client("patient/*.rs", patient=f"Patient/{pid}")
        events = person.get("/fhir/AuditEvent", params={"subtype": "search-type"}).json()
        return [e["resource"] for e in events.get("entry", [])]

    (seen,) = seen_by("sa-p1")
    assert seen["agent"][0]["who"]["reference"] == PARTNER
    assert _persons(seen) == ["Patient/sa-p1"]
    assert "sa-p2" not in json.dumps(seen)  # the other person answered by the same search is not shown
    assert [_persons(e) for e in seen_by("sa-p2")] == [["Patient/sa-p2"]]
    assert seen_by("sa-p3") == []
    hidden = partner.get("/fhir/Task", params={"patient": "Patient/sa-p3"}).json()
    assert hidden["total"] == 0  # no consent: nothing of sa-p3's is answered...
    (tried,) = seen_by("sa-p3")  # ...and sa-p3 still sees that the partner searched their file
    assert tried["agent"][0]["who"]["reference"] == PARTNER
    assert _persons(tried) == ["Patient/sa-p3"]


def test_a_search_naming_a_person_is_in_their_trail_even_when_it_answered_nothing(fhir: TestClient) -> None:
    _person(fhir, "sa-f")
    assert (
        fhir.get("/fhir/Task", params={"patient": "Patient/sa-f", "status": "cancelled"}).json()["total"] == 0
    )
    assert fhir.get("/fhir/Patient", params={"_id": "sa-g,sa-f", "name": "nobody"}).json()["total"] == 0
    (task_search,) = _searches(fhir)
    assert _persons(task_search) == ["Patient/sa-f"]
    assert sorted(_persons(e)[0] for e in _searches(fhir, "Patient")) == ["Patient/sa-f", "Patient/sa-g"]


def test_reading_the_trail_is_recorded_naming_no_one(fhir: TestClient) -> None:
    """AuditEvents are the trail itself: a search of them is recorded, naming no person (naming
    theirs would grow a person's trail at each review of it, and shift the pages being read)."""
    _person(fhir, "sa-t")
    fhir.get("/fhir/Task", params={"patient": "Patient/sa-t"})
    for _ in range(3):
        about = fhir.get(
            "/fhir/AuditEvent", params={"patient": "Patient/sa-t", "_count": "1", "_total": "accurate"}
        ).json()
        assert about["total"] == 4  # the PUTs of the person, their Task and CarePlan; the Task search
    reviews = [
        e["resource"]
        for e in fhir.get("/fhir/AuditEvent", params={"subtype": "search-type"}).json()["entry"]
        if _query(e["resource"]).startswith("AuditEvent?")
    ]
    assert len(reviews) == 3
    assert all(_persons(e) == [] for e in reviews)


def test_a_type_history_is_audited_once_per_person_it_answered(fhir: TestClient) -> None:
    _person(fhir, "sa-h1")
    _person(fhir, "sa-h2")
    versions = fhir.get("/fhir/Task/_history").json()
    assert {e["resource"]["id"] for e in versions["entry"]} == {"sa-h1-t0", "sa-h2-t0"}
    events = fhir.get("/fhir/AuditEvent", params={"subtype": "history-type"}).json()["entry"]
    assert sorted(p for e in events for p in _persons(e["resource"])) == ["Patient/sa-h1", "Patient/sa-h2"]
