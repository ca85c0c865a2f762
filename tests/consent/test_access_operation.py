"""``Patient/{id}/$access``: the decision explained, and who may ask."""

from __future__ import annotations

import pytest

from fhir_gateway.fhir.operations.access import access_operation
from fhir_gateway.kit.errors import BadRequest, Forbidden, NotFound
from fhir_gateway.storage.database import Database
from tests.consent.support import caller, careteam, consent, provision, store

SAAD, DAC = "Organization/saad", "Organization/dac"
TEAM = "care-team-opt-out"


@pytest.fixture
def seeded(consent_db: Database) -> Database:
    with consent_db.transaction(write=True) as conn:
        store(conn, "Patient", "p1", {"resourceType": "Patient"})
        store(
            conn,
            "Consent",
            "home-care",
            consent("p1", provision("permit", actors=[SAAD], purposes=["TREAT"])),
        )
        store(conn, "Consent", "no-coord", consent("p1", provision("deny", actors=[DAC], purposes=["COC"])))
        store(conn, "CareTeam", "ct1", careteam("p1", [(DAC, None, None)]))
    return consent_db


def _params(result: dict[str, object]) -> dict[str, object]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))  # type: ignore[union-attr]
        for p in result["parameter"]
    }  # type: ignore[attr-defined]


def test_explains_the_seed_case(seeded: Database) -> None:
    with seeded.transaction() as conn:
        trusted = caller(trusted=True)
        home = _params(access_operation(conn, trusted, "p1", SAAD, "TREAT", None, policy=TEAM))
        coord = _params(access_operation(conn, trusted, "p1", DAC, "COC", "Task", policy=TEAM))
        default = _params(access_operation(conn, trusted, "p1", DAC, "TREAT", None, policy=TEAM))
        nobody = _params(
            access_operation(conn, trusted, "p1", "Organization/x", "COC", None, policy="opt-in")
        )
    assert home["decision"] == "permit"
    assert home["decidedBy"] == {"reference": "Consent/home-care"}
    assert coord["decision"] == "deny"
    assert coord["decidedBy"] == {"reference": "Consent/no-coord"}
    assert default["decision"] == "permit"
    assert default["policy"] == "default policy: care-team-opt-out"
    assert nobody["decision"] == "deny"
    assert nobody["policy"] == "default policy: opt-in"


def test_who_may_ask(seeded: Database) -> None:
    with seeded.transaction() as conn:
        access_operation(conn, caller(patient="p1"), "p1", SAAD, "TREAT", None, policy=TEAM)
        access_operation(conn, caller(SAAD, scope="AuditEvent"), "p1", SAAD, "TREAT", None, policy=TEAM)
        access_operation(
            conn, caller(SAAD, purpose="TREAT", scope="Consent"), "p1", DAC, "COC", None, policy=TEAM
        )
        for who in (
            caller(patient="p2"),
            caller(DAC, purpose="COC", scope="Consent"),
            caller("Organization/x"),
        ):
            with pytest.raises(Forbidden):
                access_operation(conn, who, "p1", SAAD, "TREAT", None, policy=TEAM)
        with pytest.raises(BadRequest):
            access_operation(conn, caller(trusted=True), "p1", "Patient/p1", "TREAT", None, policy=TEAM)
        with pytest.raises(NotFound):
            access_operation(conn, caller(trusted=True), "nobody", SAAD, "TREAT", None, policy=TEAM)
