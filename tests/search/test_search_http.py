"""Search through HTTP (FHIR R4 search.html): parameter kinds, modifiers, prefixes, OR/AND,
chains, _has, includes, sorting, paging, summaries, unknown parameters and injection attempts."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

FHIR = "application/fhir+json"
NIR = "urn:oid:1.2.250.1.213.1.4.8"


def _put(fhir: TestClient, body: dict[str, Any]) -> None:
    response = fhir.put(
        f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers={"Content-Type": FHIR}
    )
    assert response.status_code in (200, 201), response.text


def _ids(fhir: TestClient, path: str, **params: str) -> list[str]:
    response = fhir.get(f"/fhir/{path}", params=params)
    assert response.status_code == 200, response.text
    return sorted(
        e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    )


@pytest.fixture
def world(fhir: TestClient) -> TestClient:
    people = [
        ("p1", "Martin", "Jeanne", "1941-03-02", "female"),
        ("p2", "Martín", "Paul", "1950-07-14", "male"),
        ("p3", "Durand", "Élise", "1938-12-25", "female"),
    ]
    for pid, family, given, birth, gender in people:
        _put(
            fhir,
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": family, "given": [given]}],
                "birthDate": birth,
                "gender": gender,
                "identifier": [{"system": NIR, "value": f"NIR-{pid}"}],
            },
        )
    _put(fhir, {"resourceType": "Organization", "id": "saad", "name": "SAAD Les Tilleuls"})
    _put(
        fhir,
        {
            "resourceType": "CareTeam",
            "id": "team1",
            "status": "active",
            "subject": {"reference": "Patient/p1"},
            "participant": [{"member": {"reference": "Organization/saad"}}],
        },
    )
    _put(
        fhir,
        {
            "resourceType": "CarePlan",
            "id": "plan1",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
            "careTeam": [{"reference": "CareTeam/team1"}],
            "category": [{"coding": [{"system": "urn:cat", "code": "plan-aide"}], "text": "Plan d'aide"}],
            "period": {"start": "2026-01-01", "end": "2026-12-31"},
        },
    )
    tasks = [
        ("t1", "p1", "requested", "2026-01-15T09:00:00+01:00", "routine"),
        ("t2", "p1", "completed", "2026-02-01T10:00:00Z", "urgent"),
        ("t3", "p2", "requested", "2025-06-30", "routine"),
        ("t4", "p3", "in-progress", "2026-03-10T08:30:00Z", None),
    ]
    for tid, pid, status, authored, priority in tasks:
        body: dict[str, Any] = {
            "resourceType": "Task",
            "id": tid,
            "status": status,
            "intent": "order",
            "for": {"reference": f"Patient/{pid}"},
            "authoredOn": authored,
            "owner": {"reference": "Organization/saad"},
            "basedOn": [{"reference": "CarePlan/plan1"}] if pid == "p1" else [],
        }
        if priority:
            body["priority"] = priority
        _put(fhir, body)
    _put(
        fhir,
        {
            "resourceType": "Task",
            "id": "t5",
            "status": "requested",
            "intent": "order",
            "partOf": [{"reference": "Task/t1"}],
            "for": {"reference": "Patient/p1"},
        },
    )
    return fhir


def test_token_forms(world: TestClient) -> None:
    assert _ids(world, "Patient", identifier=f"{NIR}|NIR-p1") == ["p1"]
    assert _ids(world, "Patient", identifier="NIR-p2") == ["p2"]
    assert _ids(world, "Patient", identifier=f"{NIR}|") == ["p1", "p2", "p3"]
    assert _ids(world, "Patient", gender="female") == ["p1", "p3"]
    assert _ids(world, "Task", **{"status:not": "requested"}) == ["t2", "t4"]
    assert _ids(world, "Task", **{"priority:missing": "true"}) == ["t4", "t5"]
    assert _ids(world, "CarePlan", **{"category:text": "plan d"}) == ["plan1"]


def test_string_default_exact_contains(world: TestClient) -> None:
    assert _ids(world, "Patient", family="martin") == ["p1", "p2"]  # accents and case folded
    assert _ids(world, "Patient", **{"family:exact": "Martín"}) == ["p2"]
    assert _ids(world, "Patient", **{"name:contains": "lis"}) == ["p3"]
    assert _ids(world, "Organization", name="saad les") == ["saad"]


def test_date_prefixes(world: TestClient) -> None:
    assert _ids(world, "Patient", birthdate="1941") == ["p1"]
    assert _ids(world, "Patient", birthdate="lt1945-01-01") == ["p1", "p3"]
    assert _ids(world, "Patient", birthdate="ge1950-07-14") == ["p2"]
    assert _ids(world, "Task", **{"authored-on": "2026-01"}) == ["t1"]
    assert _ids(world, "Task", **{"authored-on": "sa2026-02-15"}) == ["t4"]
    assert _ids(world, "Task", **{"authored-on": "eb2026-01-01"}) == ["t3"]
    assert _ids(world, "Task", **{"authored-on": "ne2026-02-01"}) == ["t1", "t3", "t4"]
    assert _ids(world, "CarePlan", date="ap2026-06-01") == ["plan1"]


def test_or_and_and_repeats(world: TestClient) -> None:
    assert _ids(world, "Task", status="requested,completed") == ["t1", "t2", "t3", "t5"]
    response = world.get(
        "/fhir/Task?status=requested,completed&patient=Patient/p1&authored-on=ge2026-01-01"
        "&authored-on=lt2026-02-01"
    )
    assert [e["resource"]["id"] for e in response.json()["entry"]] == ["t1"]


def test_reference_forms_and_chains(world: TestClient) -> None:
    assert _ids(world, "Task", patient="p2") == ["t3"]
    assert _ids(world, "Task", subject="Patient/p3") == ["t4"]
    assert _ids(world, "Task", **{"patient.identifier": f"{NIR}|NIR-p2"}) == ["t3"]
    assert _ids(world, "Task", **{"based-on:CarePlan.care-team.participant": "Organization/saad"}) == [
        "t1",
        "t2",
    ]
    assert _ids(world, "Patient", **{"_has:Task:patient:status": "in-progress"}) == ["p3"]
    assert _ids(world, "Patient", **{"_has:CarePlan:subject:_has:Task:based-on:status": "completed"}) == [
        "p1"
    ]


def test_a_persons_rows_meet_every_kind_of_other_criterion(world: TestClient) -> None:
    """The other criteria of a search of one person's rows are tested on each of them
    (``search.compiler``, per-row tests): chains, ``:missing``, ``:not``, dates, several values."""
    assert _ids(world, "Task", patient="Patient/p1") == ["t1", "t2", "t5"]
    assert _ids(world, "Task", patient="Patient/p1", status="requested") == ["t1", "t5"]
    assert _ids(world, "Task", patient="Patient/p1", **{"status:not": "requested"}) == ["t2"]
    assert _ids(world, "Task", patient="Patient/p1", **{"priority:missing": "true"}) == ["t5"]
    assert _ids(world, "Task", patient="Patient/p1", **{"based-on:CarePlan.status": "active"}) == ["t1", "t2"]
    assert _ids(world, "Task", patient="Patient/p1", **{"authored-on": "ge2026-01-20"}) == ["t2"]
    assert _ids(world, "Task", patient="Patient/p1,Patient/p2", status="requested") == ["t1", "t3", "t5"]
    assert _ids(world, "Task", patient="Patient/p1", status="requested", _id="t5") == ["t5"]
    assert _ids(world, "Task", subject="Patient/p3", owner="Organization/saad") == ["t4"]
    assert _ids(world, "Task", patient="Patient/p1", status="requested", _count="1") == ["t1"]


def test_a_persons_search_matches_every_form_of_reference_to_them(fhir: TestClient) -> None:
    """``Task?patient=Patient/x`` is answered from the resource's person (``patient_id``), not
    from the reference's index rows: the same Tasks for every form of reference to the person
    (relative, absolute, versioned), none for a Group, a contained subject or no subject."""
    subjects = {
        "relative": {"reference": "Patient/px"},
        "absolute": {"reference": "https://elsewhere.example/fhir/Patient/px"},
        "versioned": {"reference": "Patient/px/_history/1"},
        "other": {"reference": "Patient/py"},
        "group": {"reference": "Group/px"},
        "contained": {"reference": "#px"},
    }
    for name, subject in subjects.items():
        _put(fhir, {"resourceType": "Task", "id": f"f-{name}", "status": "requested", "intent": "order",
                    "for": subject})  # fmt: skip
    _put(fhir, {"resourceType": "Task", "id": "f-none", "status": "requested", "intent": "order"})
    mine = ["f-absolute", "f-relative", "f-versioned"]
    assert _ids(fhir, "Task", patient="Patient/px") == mine
    assert _ids(fhir, "Task", subject="Patient/px") == mine
    assert _ids(fhir, "Task", patient="Patient/px", status="requested") == mine
    assert _ids(fhir, "Task", patient="Patient/px,Patient/py") == sorted([*mine, "f-other"])
    assert _ids(fhir, "Task", subject="Group/px") == ["f-group"]
    # an absolute reference searches by type and id too, or by that very URL (not this path)
    assert _ids(fhir, "Task", patient="https://elsewhere.example/fhir/Patient/px") == mine


def test_include_revinclude_and_iterate(world: TestClient) -> None:
    bundle = world.get(
        "/fhir/CarePlan", params={"subject": "Patient/p1", "_include": "CarePlan:care-team"}
    ).json()
    modes = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"])
    assert modes == [("CarePlan", "match"), ("CareTeam", "include")]
    rev = world.get("/fhir/Task", params={"_id": "t1", "_revinclude": "Task:part-of"}).json()
    assert sorted(e["resource"]["id"] for e in rev["entry"]) == ["t1", "t5"]
    iterated = world.get(
        "/fhir/Task",
        params=[("_id", "t2"), ("_include", "Task:based-on"), ("_include:iterate", "CarePlan:care-team")],
    ).json()
    assert sorted(e["resource"]["resourceType"] for e in iterated["entry"]) == [
        "CarePlan",
        "CareTeam",
        "Task",
    ]


def test_sort_and_paging(world: TestClient) -> None:
    asc = world.get("/fhir/Patient", params={"_sort": "birthdate"}).json()
    assert [e["resource"]["id"] for e in asc["entry"]] == ["p3", "p1", "p2"]
    multi = world.get("/fhir/Patient", params={"_sort": "gender,-birthdate"}).json()
    assert [e["resource"]["id"] for e in multi["entry"]] == ["p1", "p3", "p2"]
    page1 = world.get("/fhir/Task", params={"_count": "2", "_sort": "_id", "_total": "accurate"}).json()
    assert page1["total"] == 5
    assert [e["resource"]["id"] for e in page1["entry"]] == ["t1", "t2"]
    seen = [e["resource"]["id"] for e in page1["entry"]]
    link = next(x["url"] for x in page1["link"] if x["relation"] == "next")
    while link:
        page = world.get(link.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        link = next((x["url"] for x in page["link"] if x["relation"] == "next"), "")
    assert seen == ["t1", "t2", "t3", "t4", "t5"]
    previous = next(x["url"] for x in page["link"] if x["relation"] == "previous")
    assert "_offset" not in previous
    back = world.get(previous.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in back["entry"]] == ["t3", "t4"]
    last = next(x["url"] for x in page1["link"] if x["relation"] == "last")
    assert [
        e["resource"]["id"] for e in world.get(last.replace("http://testserver", "")).json()["entry"]
    ] == ["t5"]


def _relations(bundle: dict[str, Any]) -> set[str]:
    return {link["relation"] for link in bundle["link"]}


@pytest.mark.parametrize("asked", [None, "none", "estimate", "accurate"])
def test_total_of_a_full_page_only_when_asked(world: TestClient, asked: str | None) -> None:
    """search.html#total: a first page that is not full carries its total whatever is asked; a
    full page carries it (and a ``last`` link) only for ``_total=accurate`` or ``estimate``,
    and its ``next`` link pages on either way."""
    extra = {"_total": asked} if asked else {}
    whole = world.get("/fhir/Task", params={"_count": "10", **extra}).json()
    assert whole["total"] == 5
    full = world.get("/fhir/Task", params={"_count": "2", "_sort": "_id", **extra}).json()
    counted = asked in ("estimate", "accurate")
    assert ("total" in full) is counted
    assert full.get("total") == (5 if counted else None)
    assert ("last" in _relations(full)) is counted
    assert "next" in _relations(full)
    seen, link = [], next(x["url"] for x in full["link"] if x["relation"] == "next")
    while link:
        page = world.get(link.replace("http://testserver", "")).json()
        assert page.get("total") == (5 if counted else None)
        seen += [e["resource"]["id"] for e in page["entry"]]
        link = next((x["url"] for x in page["link"] if x["relation"] == "next"), "")
    assert seen == ["t3", "t4", "t5"]


def test_summary_count_elements_and_total_none(world: TestClient) -> None:
    count = world.get("/fhir/Task", params={"_summary": "count"}).json()
    assert count["total"] == 5
    assert count["entry"] == []
    elements = world.get("/fhir/Patient", params={"_id": "p1", "_elements": "gender"}).json()
    resource = elements["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "gender"}
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    summary = world.get("/fhir/Patient", params={"_id": "p1", "_summary": "true"}).json()["entry"][0][
        "resource"
    ]
    assert "name" in summary
    assert "text" not in summary


def test_unknown_parameter_is_reported_or_refused_under_strict(world: TestClient) -> None:
    lenient = world.get("/fhir/Task", params={"colour": "blue", "status": "completed"}).json()
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert [e["resource"]["id"] for e in lenient["entry"] if e["search"]["mode"] == "match"] == ["t2"]
    strict = world.get("/fhir/Task", params={"colour": "blue"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert "colour" in strict.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("family", "'; DROP TABLE resource; --"),
        ("identifier", "x' OR '1'='1|y"),
        ("birthdate", "1941' OR 1=1 --"),
        ("_sort", "birthdate; DROP TABLE resource"),
        ("_count", "10; DROP TABLE resource"),
        ("general-practitioner", "Practitioner/1' OR '1'='1"),
        ("_has:Task:patient:status", "x') OR 1=1 --"),
        ("name:contains", "%_\\"),
    ],
)
def test_injection_attempts_are_plain_values(world: TestClient, param: str, value: str) -> None:
    response = world.get("/fhir/Patient", params={param: value})
    assert response.status_code in (200, 400)
    assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")
    if response.status_code == 200:
        assert response.json()["total"] == 0
    assert _ids(world, "Patient") == ["p1", "p2", "p3"]


def test_bad_values_name_the_parameter(world: TestClient) -> None:
    for params in ({"birthdate": "yesterday"}, {"_count": "-1"}, {"_sort": "colour"}, {"gender:fuzzy": "x"}):
        response = world.get("/fhir/Patient", params=params)
        assert response.status_code == 400, params
        name = next(iter(params)).split(":")[0]
        assert name in response.json()["issue"][0]["diagnostics"]


def test_post_search_form(world: TestClient) -> None:
    response = world.post(
        "/fhir/Patient/_search",
        content=b"family=durand",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert [e["resource"]["id"] for e in response.json()["entry"]] == ["p3"]
