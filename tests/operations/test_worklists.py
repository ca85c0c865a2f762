"""Worklists (issue 8): late Tasks, orientations waiting, follow-up gaps, open alerts, as
searchset Bundles filtered by scopes and consent like any search."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.consent.support import day
from tests.operations.support import DAC, SAAD, TASK_CODES, ids, permit, put, walk

VISIT_CODES = "https://fhir-gateway.org/fhir/CodeSystem/prestation-aide-domicile"
ROLES = "https://fhir-gateway.org/fhir/CodeSystem/careteam-role"
REASONS = "https://fhir-gateway.org/fhir/CodeSystem/worklist-reason"
MDPH = "Organization/mdph"


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.rs", organization=SAAD, headers={"X-Purpose-Of-Use": "TREAT"})


def patient(client: TestClient, pid: str) -> None:
    put(client, {"resourceType": "Patient", "id": pid, "name": [{"family": pid}]})


def task(client: TestClient, tid: str, pid: str, status: str, **fields: Any) -> None:
    put(
        client,
        {
            "resourceType": "Task",
            "id": tid,
            "status": status,
            "intent": "order",
            "for": {"reference": f"Patient/{pid}"},
            "owner": {"reference": SAAD},
            **fields,
        },
    )


def planned(start: int, end: int | None = None) -> dict[str, Any]:
    period = {"start": f"{day(start)}T09:00:00+01:00"}
    if end is not None:
        period["end"] = f"{day(end)}T10:00:00+01:00"
    return {"period": period}


def visit_code() -> dict[str, Any]:
    return {"coding": [{"system": VISIT_CODES, "code": "aide-toilette"}]}


def reasons(bundle: dict[str, Any]) -> dict[str, list[str]]:
    return {
        e["resource"]["id"]: [x["valueCoding"]["code"] for x in e["search"].get("extension", [])]
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
    }


def test_late_tasks_of_an_owner(fhir: TestClient, saad: TestClient) -> None:
    for pid in ("p1", "p2"):
        patient(fhir, pid)
    permit(fhir, "p1", SAAD, "c1")
    task(fhir, "overdue", "p1", "requested", restriction=planned(-10, -3))
    task(fhir, "planned-request-passed", "p1", "received", restriction=planned(-2))
    task(fhir, "not-due", "p1", "requested", restriction=planned(-10, 5))
    task(fhir, "accepted-work", "p1", "accepted", restriction=planned(-10, -3))
    task(fhir, "missed", "p1", "accepted", code=visit_code(), restriction=planned(-1, -1))
    task(fhir, "done", "p1", "completed", code=visit_code(), restriction=planned(-1, -1))
    task(fhir, "tomorrow", "p1", "requested", code=visit_code(), restriction=planned(1, 1))
    task(fhir, "hidden", "p2", "requested", restriction=planned(-10, -3))  # p2 gave SAAD no consent
    task(fhir, "elsewhere", "p1", "requested", restriction=planned(-10, -3), owner={"reference": DAC})
    seen = fhir.get("/fhir/Task/$late", params={"owner": SAAD}).json()
    assert reasons(seen) == {
        "overdue": ["overdue-request"],
        "hidden": ["overdue-request"],
        "planned-request-passed": ["overdue-request"],
        "missed": ["missed-visit"],
    }
    assert ids(seen)[0] in ("Task/overdue", "Task/hidden")  # oldest due first
    partner = saad.get("/fhir/Task/$late").json()  # owner: its own organisation
    assert set(reasons(partner)) == {"overdue", "planned-request-passed", "missed"}
    assert partner["total"] == 3
    assert ids(partner, "include") == ["Patient/p1"]
    pages, totals = walk(saad, "/fhir/Task/$late?_count=2")
    assert totals == {3}
    assert sorted(pages) == ["Task/missed", "Task/overdue", "Task/planned-request-passed"]
    earlier = saad.get("/fhir/Task/$late", params={"on": day(-5)}).json()
    assert earlier["total"] == 0


def test_orientations_waiting_without_admission(fhir: TestClient, saad: TestClient) -> None:
    patient(fhir, "p1")
    permit(fhir, "p1", SAAD, "c1")
    orientation = {"coding": [{"system": TASK_CODES, "code": "suivi-orientation"}]}

    def follow_up(tid: str, status: str, decided: int, business: str | None = None) -> None:
        extra: dict[str, Any] = {
            "code": orientation,
            "authoredOn": day(decided),
            "requester": {"reference": MDPH},
        }
        if business:
            extra["businessStatus"] = {
                "coding": [
                    {
                        "system": "https://fhir-gateway.org/fhir/CodeSystem/orientation-status",
                        "code": business,
                    }
                ]
            }
        task(fhir, tid, "p1", status, **extra)

    follow_up("old-unanswered", "requested", -60)
    follow_up("waiting-list", "accepted", -40, "ATTENTE")
    follow_up("admitted", "completed", -50, "ADMISSION")
    follow_up("recent", "requested", -5)
    follow_up("refused", "rejected", -45, "REFUS")
    bundle = saad.get("/fhir/Task/$orientations-waiting", params={"days": "30"}).json()
    assert ids(bundle) == ["Task/old-unanswered", "Task/waiting-list"]  # oldest decision first
    assert ids(bundle, "include") == ["Patient/p1"]
    assert fhir.get("/fhir/Task/$orientations-waiting", params={"days": "3"}).json()["total"] == 3
    assert fhir.get("/fhir/Task/$orientations-waiting", params={"days": "x"}).status_code == 400
    other = fhir.get("/fhir/Task/$orientations-waiting", params={"requester": "Organization/none"}).json()
    assert other["total"] == 0


def test_open_vigilance_alerts(fhir: TestClient, saad: TestClient, make_client: ClientFactory) -> None:
    for pid in ("p1", "p2"):
        patient(fhir, pid)
    permit(fhir, "p1", SAAD, "c1")
    alert = {"coding": [{"system": TASK_CODES, "code": "alerte-vigilance"}]}
    task(fhir, "a-open", "p1", "requested", code=alert, priority="urgent")
    task(fhir, "a-seen", "p1", "in-progress", code=alert, priority="asap")
    task(fhir, "a-done", "p1", "completed", code=alert, priority="asap")
    task(fhir, "a-hidden", "p2", "requested", code=alert, priority="asap")
    task(fhir, "not-an-alert", "p1", "requested")
    assert sorted(ids(fhir.get("/fhir/Task/$open-alerts").json())) == [
        "Task/a-hidden",
        "Task/a-open",
        "Task/a-seen",
    ]
    assert sorted(ids(saad.get("/fhir/Task/$open-alerts").json())) == ["Task/a-open", "Task/a-seen"]
    assert saad.get("/fhir/Task/$open-alerts", params={"owner": DAC}).json()["total"] == 0
    no_tasks = make_client("system/Patient.rs", trusted=True)
    assert no_tasks.get("/fhir/Task/$open-alerts").status_code == 403


def _plan(client: TestClient, pid: str, end: int | None) -> None:
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": f"plan-{pid}",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{pid}"},
    }
    if end is not None:
        body["period"] = {"start": day(-400), "end": day(end)}
    put(client, body)


def _team(client: TestClient, pid: str, coordinator_end: int | None, role: str = "coordinateur") -> None:
    period: dict[str, str] = {"start": day(-300)}
    if coordinator_end is not None:
        period["end"] = day(coordinator_end)
    put(
        client,
        {
            "resourceType": "CareTeam",
            "id": f"team-{pid}",
            "status": "active",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [
                {
                    "role": [{"coding": [{"system": ROLES, "code": role}]}],
                    "member": {"reference": DAC},
                    "period": period,
                }
            ],
        },
    )


def test_people_with_an_expired_plan_or_no_coordinator(fhir: TestClient, saad: TestClient) -> None:
    for pid in ("expired", "fine", "former-coordinator", "no-team", "not-followed", "helper-only"):
        patient(fhir, pid)
    _plan(fhir, "expired", -10)
    _team(fhir, "expired", None)
    _plan(fhir, "fine", 100)
    _team(fhir, "fine", None)
    _plan(fhir, "former-coordinator", None)
    _team(fhir, "former-coordinator", -1)
    _plan(fhir, "no-team", None)
    _plan(fhir, "helper-only", None)
    _team(fhir, "helper-only", None, role="aidant")
    bundle = fhir.get("/fhir/Patient/$follow-up-gaps").json()
    assert reasons(bundle) == {
        "expired": ["plan-expired"],
        "former-coordinator": ["no-coordinator"],
        "helper-only": ["no-coordinator"],
        "no-team": ["no-coordinator"],
    }
    assert ids(bundle, "include") == ["CarePlan/plan-expired"]
    only = fhir.get("/fhir/Patient/$follow-up-gaps", params={"reason": "plan-expired"}).json()
    assert ids(only) == ["Patient/expired"]
    assert fhir.get("/fhir/Patient/$follow-up-gaps", params={"reason": "other"}).status_code == 400
    permit(fhir, "expired", SAAD, "c-expired")
    permit(fhir, "no-team", SAAD, "c-no-team")
    assert sorted(ids(saad.get("/fhir/Patient/$follow-up-gaps").json())) == [
        "Patient/expired",
        "Patient/no-team",
    ]
    pages, totals = walk(fhir, "/fhir/Patient/$follow-up-gaps?_count=3")
    assert totals == {4}
    assert len(set(pages)) == 4


def test_a_worklist_is_audited_once_per_person_on_its_page(fhir: TestClient, saad: TestClient) -> None:
    """A worklist answers many persons' data: one AuditEvent per person on the page, naming them
    (``Ctx.audit_people``), none for the persons it found but did not answer."""
    for pid in ("wl-1", "wl-2", "wl-3"):
        patient(fhir, pid)
        permit(fhir, pid, SAAD, f"c-{pid}")
        task(fhir, f"late-{pid}", pid, "requested", restriction=planned(-10, -3 + int(pid[-1])))
    assert ids(saad.get("/fhir/Task/$late", params={"_count": "2"}).json()) == [
        "Task/late-wl-1",
        "Task/late-wl-2",
    ]
    events = fhir.get("/fhir/AuditEvent", params={"subtype": "operation", "agent": SAAD}).json()
    named = sorted(
        entity["what"]["reference"]
        for event in events["entry"]
        for entity in event["resource"]["entity"]
        if entity.get("role", {}).get("code") == "1"
    )
    assert named == ["Patient/wl-1", "Patient/wl-2"]
