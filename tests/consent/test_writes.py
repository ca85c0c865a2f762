"""A partner may only write data of persons whose consent lets it write (403 otherwise)."""

from __future__ import annotations

import pytest

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent import ownership
from fhir_gateway.consent.visibility import check_write
from fhir_gateway.kit.errors import Forbidden
from fhir_gateway.storage.database import Database
from tests.consent.support import caller, careteam, consent, provision, store

SAAD, DAC = "Organization/saad", "Organization/dac"
TEAM = "care-team-opt-out"


@pytest.fixture
def seeded(consent_db: Database) -> Database:
    with consent_db.transaction(write=True) as conn:
        store(
            conn,
            "Consent",
            "read-only",
            consent("p1", provision("permit", actors=[SAAD], actions=["access"])),
        )
        store(
            conn, "Consent", "writer", consent("p2", provision("permit", actors=[SAAD], actions=["correct"]))
        )
        store(conn, "CareTeam", "ct3", careteam("p3", [(DAC, None, None)]))
        store(conn, "Consent", "no-dac", consent("p4", provision("deny", actors=[DAC])))
        store(conn, "CareTeam", "ct4", careteam("p4", [(DAC, None, None)]))
    return consent_db


@pytest.mark.parametrize(
    ("who", "res_type", "patient", "allowed"),
    [
        (caller(SAAD), "Task", "p1", False),  # a read-only permit does not allow writing
        (caller(SAAD), "Task", "p2", True),
        (caller(SAAD), "Task", "p3", False),  # no consent, not in the care team
        (caller(DAC), "Task", "p3", True),  # care-team default
        (caller(DAC), "Task", "p4", False),  # the person refused DAC
        (caller(SAAD), "Organization", None, True),  # no person
        (caller(SAAD), "Consent", "p2", False),  # partners never write Consents
        (caller(patient="p1"), "Consent", "p1", True),  # the person does
        (caller(patient="p1"), "Task", "p2", False),
        (caller(trusted=True), "Consent", "p1", True),
        (caller(SAAD, break_glass="urgence"), "Task", "p3", True),
        (caller(SAAD), "AuditEvent", None, False),
    ],
)
def test_check_write(
    seeded: Database, who: AccessContext, res_type: str, patient: str | None, allowed: bool
) -> None:
    with seeded.transaction() as conn:
        if allowed:
            check_write(conn, who, res_type, patient, policy=TEAM)
        else:
            with pytest.raises(Forbidden):
                check_write(conn, who, res_type, patient, policy=TEAM)


@pytest.mark.parametrize(
    ("who", "res_type", "allowed"),
    [
        (caller(SAAD), "Location", False),  # a type of no person without a rule: deny by default
        (caller(SAAD), "Endpoint", False),
        (caller(trusted=True), "Location", True),
        (caller(SAAD), "Subscription", True),  # its own rule (subscriptions.hooks: the creating client)
        (caller(SAAD), "Task", True),  # a person's data: consent decides (check_write)
    ],
)
def test_shared_types_without_a_rule_are_refused(
    seeded: Database, who: AccessContext, res_type: str, allowed: bool
) -> None:
    body = {"resourceType": res_type, "id": "x"}
    with seeded.transaction() as conn:
        if allowed:
            ownership.check_write(conn, who, res_type, "x", body, None)
        else:
            with pytest.raises(Forbidden, match="trusted clients only"):
                ownership.check_write(conn, who, res_type, "x", body, None)
