"""``Patient/{id}/$everything`` (FHIR R4 patient-operation-everything.html): the person's record,
filtered by their consent in SQL, paged, audited."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.operations.support import (
    DAC,
    SAAD,
    audit_events,
    deny,
    ids,
    organization,
    permit,
    person,
    put,
    walk,
)


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.rs", organization=SAAD, headers={"X-Purpose-Of-Use": "TREAT"})


def test_trusted_client_gets_the_whole_compartment_patient_first_with_support(fhir: TestClient) -> None:
    organization(fhir, SAAD)
    organization(fhir, "Organization/unrelated")
    person(fhir, "p1", tasks=3)
    person(fhir, "p2", tasks=2)
    bundle = fhir.get("/fhir/Patient/p1/$everything").json()
    assert bundle["type"] == "searchset"
    matches = ids(bundle)
    assert matches[0] == "Patient/p1"
    assert sorted(matches[1:]) == ["CarePlan/p1-plan", "Task/p1-t0", "Task/p1-t1", "Task/p1-t2"]
    assert bundle["total"] == 5
    assert ids(bundle, "include") == ["Organization/saad"]  # the Tasks' owner, not the unrelated one


def test_paging_walks_every_resource_once(fhir: TestClient) -> None:
    person(fhir, "p1", tasks=7)
    seen, totals = walk(fhir, "/fhir/Patient/p1/$everything?_count=3")
    assert totals == {9}
    assert len(seen) == len(set(seen)) == 9
    assert seen[0] == "Patient/p1"


def test_partner_sees_only_what_the_consent_permits(fhir: TestClient, saad: TestClient) -> None:
    person(fhir, "p1", tasks=2)
    permit(fhir, "p1", SAAD, "c1", classes=["Patient", "Task"])
    bundle = saad.get("/fhir/Patient/p1/$everything").json()
    assert sorted(ids(bundle)) == ["Patient/p1", "Task/p1-t0", "Task/p1-t1"]  # no CarePlan, no Consent
    assert bundle["total"] == 3
    counted = saad.get("/fhir/Patient/p1/$everything", params={"_count": "1"}).json()
    assert counted["total"] == 3  # totals never count hidden resources


def test_refused_person_is_a_404_and_an_audited_denial(fhir: TestClient, saad: TestClient) -> None:
    person(fhir, "p1", tasks=1)
    deny(fhir, "p1", SAAD, "d1")
    response = saad.get("/fhir/Patient/p1/$everything")
    assert response.status_code == 404
    assert saad.get("/fhir/Patient/nobody/$everything").status_code == 404
    denials = [e for e in audit_events(fhir, entity="Patient/p1") if e["outcome"] == "4"]
    assert len(denials) == 1
    assert denials[0]["subtype"][0]["code"] == "operation"


def test_one_audit_event_names_the_person_and_the_deciding_consent(
    fhir: TestClient, saad: TestClient
) -> None:
    person(fhir, "p1", tasks=1)
    permit(fhir, "p1", SAAD, "c1")
    assert saad.get("/fhir/Patient/p1/$everything").status_code == 200
    mine = [
        e
        for e in audit_events(fhir)
        if e["subtype"][0]["code"] == "operation" and e["agent"][0]["who"].get("reference") == SAAD
    ]
    assert len(mine) == 1
    details = [d for ent in mine[0]["entity"] for d in ent.get("detail", [])]
    assert {"type": "decided-by", "valueString": "Consent/c1"} in details


def test_type_and_since_filter_and_are_checked(fhir: TestClient, make_client: ClientFactory) -> None:
    person(fhir, "p1", tasks=2)
    tasks_only = fhir.get("/fhir/Patient/p1/$everything", params={"_type": "Task"}).json()
    assert sorted(ids(tasks_only)) == ["Task/p1-t0", "Task/p1-t1"]
    later = fhir.get("/fhir/Patient/p1/$everything", params={"_since": "2999-01-01T00:00:00Z"}).json()
    assert later["total"] == 0
    assert fhir.get("/fhir/Patient/p1/$everything", params={"_type": "Observation"}).status_code == 400
    assert fhir.get("/fhir/Patient/p1/$everything", params={"_since": "yesterday"}).status_code == 400
    narrow = make_client("system/Patient.rs system/Task.rs", trusted=True)
    bundle = narrow.get("/fhir/Patient/p1/$everything").json()
    assert not any(i.startswith("CarePlan/") for i in ids(bundle))  # no CarePlan scope: left out
    assert narrow.get("/fhir/Patient/p1/$everything", params={"_type": "CarePlan"}).status_code == 403
    warned = fhir.get("/fhir/Patient/p1/$everything", params={"start": "2020-01-01"}).json()
    assert warned["entry"][-1]["search"]["mode"] == "outcome"


def test_person_reads_their_own_record_only(fhir: TestClient, make_client: ClientFactory) -> None:
    person(fhir, "me", tasks=1)
    person(fhir, "other", tasks=1)
    put(fhir, {"resourceType": "Organization", "id": "dac", "name": DAC})
    me = make_client("patient/*.rs", patient="Patient/me")
    assert sorted(ids(me.get("/fhir/Patient/me/$everything").json())) == [
        "CarePlan/me-plan",
        "Patient/me",
        "Task/me-t0",
    ]
    assert me.get("/fhir/Patient/other/$everything").status_code == 404
