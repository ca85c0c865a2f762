"""A caller in many care teams: its consent decisions stay as cheap as a caller in one.

A home-care service is a member of the CareTeam of every person it visits: thousands of teams.
A grant whose actor is a CareTeam (FHIR R4 consent.html#6.2.3, ``Consent.provision.actor``)
applies to the team's current members, so each decision asks whether the caller belongs to
that team. It was asked of the set of every team the caller belongs to, read in full at each
statement: a read cost 0.15 ms of PostgreSQL with no team and 1.9 ms with 5,000 (docs/performance.md,
twenty-fourth session). It is now one probe of the grant's own team.

The cost is told here by what PostgreSQL reads, not by time: the index entries of
``careteam_member`` that the statement fetched (``pg_stat_get_xact_tuples_returned`` of its
indexes: this transaction's own counts).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text

from fhir_gateway.consent.decision import decision_for, explain
from fhir_gateway.consent.predicates import CARE_TEAM_OPT_OUT, OPT_IN
from fhir_gateway.consent.visibility import decided_read_query
from fhir_gateway.storage import repository
from fhir_gateway.storage.database import Database
from tests.consent.support import caller, careteam, consent, provision, store, visible_of_person

SAAD = "Organization/saad"
OTHER_TEAMS = 1_500


def _world(conn: Connection, *, teams: int) -> None:
    """Person p1 with a Task; a Consent letting p1's team read (actor ``CareTeam/ct1``) and
    denying another organisation; the service a member of p1's team and of ``teams`` others."""
    store(conn, "Patient", "p1", {"resourceType": "Patient"})
    store(conn, "Task", "t1", {"resourceType": "Task", "status": "requested", "intent": "order",
                               "for": {"reference": "Patient/p1"}})  # fmt: skip
    store(conn, "CareTeam", "ct1", careteam("p1", [(SAAD, None, None)]))
    store(conn, "Consent", "c1", consent("p1", provision("permit", actors=["CareTeam/ct1"])))
    store(conn, "Consent", "c2", consent("p1", provision("deny", actors=["Organization/dac"])))
    for n in range(teams):
        store(conn, "Patient", f"q{n}", {"resourceType": "Patient"})
        store(conn, "CareTeam", f"team-q{n}", careteam(f"q{n}", [(SAAD, None, None)]))


def _member_entries_read(conn: Connection) -> int:
    """Index entries of ``careteam_member`` fetched so far by this transaction (PostgreSQL)."""
    found = conn.execute(
        text(
            "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index"
            " WHERE indrelid = 'careteam_member'::regclass"
        )
    ).scalar_one()
    return int(found)


def _decisions(conn: Connection, policy: str) -> list[Any]:
    """The service's read of the Task, its audited decision and a search of the person's Tasks."""
    access = caller(SAAD)
    query = decided_read_query(access, "Task", policy, check_client=False)
    assert query is not None
    read = repository.get_current_decided(conn, query, "Task", "t1")
    audited = decision_for(conn, access, "p1", "Task", policy=policy)
    searched = visible_of_person(conn, access, "Task", policy, "p1")
    return [read is not None, audited.permit, audited.decided_by, searched]


@pytest.mark.parametrize("policy", [OPT_IN, CARE_TEAM_OPT_OUT])
def test_a_callers_many_teams_are_not_read_to_decide_on_one_person(consent_db: Database, policy: str) -> None:
    if consent_db.dialect != "postgresql":
        pytest.skip("the index counters read here are PostgreSQL's")
    with consent_db.transaction(write=True) as conn:
        _world(conn, teams=OTHER_TEAMS)
    with consent_db.transaction() as conn:
        before = _member_entries_read(conn)
        answers = _decisions(conn, policy)
        read = _member_entries_read(conn) - before
    assert answers == [True, True, "Consent/c1", {"Task/t1"}]
    assert read < 20, f"{read} careteam_member index entries read for one person's decisions"


def test_a_team_grant_still_decides_for_its_current_members_only(consent_db: Database) -> None:
    """The probe asks the grant's team itself: another team of the caller does not make a grant to
    ``CareTeam/ct1`` apply, and leaving ``ct1`` ends it, whatever the caller's other teams."""
    with consent_db.transaction(write=True) as conn:
        _world(conn, teams=3)
        store(conn, "CareTeam", "ct1", careteam("p1", [("Organization/other", None, None)]))
    with consent_db.transaction() as conn:
        assert _decisions(conn, OPT_IN) == [False, False, "default policy: opt-in", set()]


def test_access_explains_a_decision_by_the_teams_that_can_decide_it_only(consent_db: Database) -> None:
    """``$access`` (``decision.explain``) names the caller's teams that decide on the person (the
    person's own and those the person's grants name), not every team the caller is in."""
    with consent_db.transaction(write=True) as conn:
        _world(conn, teams=40)
    with consent_db.transaction() as conn:
        decision = explain(conn, "p1", SAAD, "TREAT", "Task", OPT_IN)
    assert (decision.permit, decision.decided_by) == (True, "Consent/c1")
    memberships = [reason for reason in decision.reasons if reason.startswith("member of")]
    assert memberships == ["member of CareTeam/ct1 (current)"]
