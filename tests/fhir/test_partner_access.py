"""Consent through the REST API (issue 4): what a partner organisation sees, counts, pages,
includes, chains and writes, decided by the person's Consent resources in SQL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.consent.support import careteam, consent, provision

FHIR = "application/fhir+json"
SAAD = "Organization/saad"
DAC = "Organization/dac"


def _put(fhir: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = fhir.put(
        f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers={"Content-Type": FHIR}
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def _task(pid: str, **more: Any) -> dict[str, Any]:
    """A requested Task for person ``pid``, with ``more`` elements."""
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{pid}"},
        **more,
    }


def _person(fhir: TestClient, pid: str, tasks: int = 0) -> None:
    _put(
        fhir,
        {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": f"Nom-{pid}"}],
            "identifier": [{"system": "urn:test", "value": pid}],
        },
    )
    for k in range(tasks):
        _put(
            fhir,
            _task(pid, id=f"{pid}-t{k}", owner={"reference": SAAD}),
        )


def _permit(fhir: TestClient, pid: str, actor: str, cid: str, **kw: Any) -> None:
    _put(fhir, {**consent(pid, provision("permit", actors=[actor], **kw)), "id": cid})


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=SAAD, headers={"X-Purpose-Of-Use": "TREAT"})


@pytest.fixture
def dac(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=DAC, headers={"X-Purpose-Of-Use": "COC"})


def test_home_care_yes_coordination_no(fhir: TestClient, saad: TestClient, dac: TestClient) -> None:
    _person(fhir, "p1", tasks=2)
    _put(fhir, {**consent("p1", provision("permit", actors=[SAAD], purposes=["TREAT"])), "id": "c-saad"})
    _put(fhir, {**consent("p1", provision("deny", actors=[DAC])), "id": "c-dac"})
    assert saad.get("/fhir/Patient/p1").status_code == 200
    assert saad.get("/fhir/Task", params={"patient": "Patient/p1"}).json()["total"] == 2
    assert dac.get("/fhir/Patient/p1").status_code == 404
    assert dac.get("/fhir/Task", params={"patient": "Patient/p1"}).json()["total"] == 0
    explained = fhir.get("/fhir/Patient/p1/$access", params={"actor": DAC, "purpose": "COC"}).json()
    decision = {p["name"]: p.get("valueCode", p.get("valueString")) for p in explained["parameter"]}
    assert decision["decision"] == "deny"


def test_partner_sees_exactly_the_allowed_25_of_100_tasks_paged_by_10(
    fhir: TestClient, saad: TestClient
) -> None:
    for n in range(10):
        _person(fhir, f"q{n}", tasks=10)
    for n in (1, 4):
        _permit(fhir, f"q{n}", SAAD, f"c-q{n}")
    _put(
        fhir,
        {
            **consent("q7", provision("permit", actors=[SAAD], data=[f"Task/q7-t{k}" for k in range(5)])),
            "id": "c-q7",
        },
    )
    seen: list[str] = []
    url: str | None = "/fhir/Task?_count=10&_total=accurate"
    totals = set()
    while url:
        page = saad.get(url.replace("http://testserver", "")).json()
        totals.add(page["total"])
        seen += [e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert totals == {25}
    assert len(seen) == len(set(seen)) == 25
    assert all(s.startswith(("q1-", "q4-", "q7-")) for s in seen)
    assert saad.get("/fhir/Task", params={"_summary": "count"}).json()["total"] == 25


def test_include_revinclude_chain_and_has_do_not_leak(fhir: TestClient, saad: TestClient) -> None:
    _person(fhir, "open", tasks=1)
    _person(fhir, "closed", tasks=1)
    _permit(fhir, "open", SAAD, "c-open", classes=["Task"])
    _put(
        fhir,
        _task("open", id="bridge", focus={"reference": "Patient/closed"}),
    )
    included = saad.get("/fhir/Task", params={"_id": "bridge", "_include": "Task:focus"}).json()
    assert [e["resource"]["id"] for e in included["entry"]] == ["bridge"]
    rev = saad.get("/fhir/Task", params={"_id": "open-t0", "_revinclude": "Task:part-of"}).json()
    assert all(e["resource"]["resourceType"] == "Task" for e in rev["entry"])
    chained = saad.get("/fhir/Task", params={"patient.identifier": "urn:test|closed"}).json()
    assert chained["total"] == 0
    focus_chain = saad.get("/fhir/Task", params={"focus:Patient.name": "Nom-closed"}).json()
    assert focus_chain["total"] == 0
    has = saad.get("/fhir/Patient", params={"_has:Task:patient:status": "requested"}).json()
    assert has["total"] == 0  # the Patient class is not permitted: not even "open" is revealed
    tasks_of_closed = saad.get("/fhir/Task", params={"_has:Task:part-of:status": "requested"}).json()
    assert tasks_of_closed["total"] == 0


def test_care_team_member_sees_by_default_and_loses_access_on_leaving(
    fhir: TestClient, saad: TestClient
) -> None:
    _person(fhir, "r1", tasks=1)
    team = {**careteam("r1", [(SAAD, "2020-01-01", None)]), "id": "team-r1"}
    _put(fhir, team)
    assert saad.get("/fhir/Task/r1-t0").status_code == 200
    team["participant"][0]["period"]["end"] = "2021-01-01"
    _put(fhir, team)
    assert saad.get("/fhir/Task/r1-t0").status_code == 404


def test_revocation_takes_effect_on_the_next_request(fhir: TestClient, dac: TestClient) -> None:
    _person(fhir, "s1")
    _permit(fhir, "s1", DAC, "c-s1")
    assert dac.get("/fhir/Patient/s1").status_code == 200
    revoked = fhir.get("/fhir/Consent/c-s1").json()
    revoked["status"] = "inactive"
    _put(fhir, revoked)
    assert dac.get("/fhir/Patient/s1").status_code == 404
    assert dac.get("/fhir/Patient/s1/_history/1").status_code == 404


def test_partner_write_for_a_person_it_may_not_access_is_403(fhir: TestClient, dac: TestClient) -> None:
    _person(fhir, "w1")
    task = _task("w1")
    assert dac.post("/fhir/Task", json=task, headers={"Content-Type": FHIR}).status_code == 403
    _permit(fhir, "w1", DAC, "c-w1")
    assert dac.post("/fhir/Task", json=task, headers={"Content-Type": FHIR}).status_code == 201
    own_consent = {**consent("w1", provision("permit", actors=[DAC])), "id": "self-granted"}
    assert (
        dac.put("/fhir/Consent/self-granted", json=own_consent, headers={"Content-Type": FHIR}).status_code
        == 403
    )


def test_break_glass_is_granted_only_to_flagged_clients_and_audited(
    fhir: TestClient, make_client: ClientFactory
) -> None:
    _person(fhir, "bg")
    plain = make_client("system/*.rs", organization="Organization/samu", headers={"X-Break-Glass": "urgence"})
    assert plain.get("/fhir/Patient/bg").status_code == 404
    flagged = make_client(
        "system/*.rs",
        organization="Organization/samu",
        break_glass=True,
        headers={"X-Break-Glass": "chute, personne inconsciente"},
    )
    assert flagged.get("/fhir/Patient/bg").status_code == 200
    events = fhir.get("/fhir/AuditEvent", params={"_tag": "urn:fhir-gateway:audit|break-glass"}).json()
    assert events["total"] == 1
    assert flagged.get("/fhir/Patient/bg", headers={"X-Break-Glass": ""}).status_code == 404


def test_person_sees_who_looked_at_their_file(
    fhir: TestClient, saad: TestClient, make_client: ClientFactory
) -> None:
    _person(fhir, "me")
    _permit(fhir, "me", SAAD, "c-me")
    saad.get("/fhir/Patient/me")
    person = make_client("patient/*.rs", patient="Patient/me")
    events = person.get("/fhir/AuditEvent").json()
    readers = {
        e["resource"]["agent"][0]["who"].get("reference")
        for e in events["entry"]
        if e["resource"]["subtype"][0]["code"] == "read"
    }
    assert SAAD in readers


def test_a_paging_link_is_bound_to_its_client_another_client_is_refused(
    fhir: TestClient, saad: TestClient, dac: TestClient
) -> None:
    """Paging links (search.html#paging) carry a cursor bound to the client that ran the
    search: handed over (or stolen), a link is refused to another client with a 403 that says
    nothing of the query, and without a token it shows nothing (issue 11)."""
    for pid in ("p1", "p2", "p3"):
        _person(fhir, pid, tasks=2)
    for pid in ("p1", "p2"):
        _permit(fhir, pid, SAAD, f"c-{pid}", purposes=["TREAT"])
    _put(fhir, {**consent("p3", provision("permit", actors=[DAC])), "id": "c-p3"})
    first = saad.get(
        "/fhir/Task", params={"_count": "1", "_sort": "_id", "owner": SAAD, "_total": "accurate"}
    ).json()
    assert first["total"] == 4
    link = next(x["url"] for x in first["link"] if x["relation"] == "next").replace("http://testserver", "")
    assert "_offset" not in link
    assert "_cursor=" in link
    assert saad.get(link).json()["total"] == 4
    refused = dac.get(link)
    assert refused.status_code == 403
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "forbidden"
    assert "another client" in outcome["issue"][0]["diagnostics"]
    for echoed in ("saad", "owner", "_sort", "Task"):
        assert echoed not in refused.text
    anonymous = fhir.get(link, headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_same_search_shape_for_two_partners_and_other_values_answers_each_its_own(
    fhir: TestClient, saad: TestClient, dac: TestClient
) -> None:
    """Search statements are reused per shape and caller filter (storage.search_repository):
    interleaved searches of one shape with other values and callers never mix their answers."""
    _person(fhir, "p1", tasks=2)
    _person(fhir, "p2", tasks=3)
    _permit(fhir, "p1", SAAD, "c-p1-saad")
    _put(fhir, {**consent("p1", provision("deny", actors=[DAC])), "id": "c-p1-dac"})
    _permit(fhir, "p2", DAC, "c-p2-dac", purposes=["COC"])
    _put(fhir, {**consent("p2", provision("deny", actors=[SAAD])), "id": "c-p2-saad"})
    expected = {("saad", "p1"): 2, ("saad", "p2"): 0, ("dac", "p1"): 0, ("dac", "p2"): 3}
    clients = {"saad": saad, "dac": dac}
    for _ in range(2):
        for (who, pid), total in expected.items():
            page = clients[who].get("/fhir/Task", params={"patient": f"Patient/{pid}", "status": "requested"})
            assert page.json()["total"] == total, (who, pid)
            ids = {e["resource"]["id"] for e in page.json().get("entry", [])}
            assert all(i.startswith(f"{pid}-") for i in ids)
    # the decision still follows the Consents at each request: SAAD's permit for p1 ends
    _put(fhir, {**consent("p1", provision("permit", actors=[SAAD])), "id": "c-p1-saad", "status": "inactive"})
    assert (
        saad.get("/fhir/Task", params={"patient": "Patient/p1", "status": "requested"}).json()["total"] == 0
    )


def test_a_partner_write_is_decided_by_the_units_first_statement(
    fhir: TestClient, dac: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partner's create and update read the person's consent with the client's check
    (``visibility.write_probe``): no separate decision statement, the same answers."""
    from fhir_gateway.consent import visibility

    def no_second_statement(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the decision was asked again")

    _person(fhir, "wp1")
    task = _task("wp1")
    monkeypatch.setattr(visibility, "write_decision", no_second_statement)
    assert dac.post("/fhir/Task", json=task, headers={"Content-Type": FHIR}).status_code == 403
    monkeypatch.undo()
    _permit(fhir, "wp1", DAC, "c-wp1")
    monkeypatch.setattr(visibility, "write_decision", no_second_statement)
    created = dac.post("/fhir/Task", json=task, headers={"Content-Type": FHIR})
    assert created.status_code == 201
    updated = dac.put(
        f"/fhir/Task/{created.json()['id']}",
        json={**created.json(), "status": "accepted"},
        headers={"Content-Type": FHIR},
    )
    assert updated.status_code == 200
    monkeypatch.undo()
    withdrawn = fhir.get("/fhir/Consent/c-wp1").json()
    _put(fhir, {**withdrawn, "status": "inactive"})
    assert dac.post("/fhir/Task", json=task, headers={"Content-Type": FHIR}).status_code == 403
