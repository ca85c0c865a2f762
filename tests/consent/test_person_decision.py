"""The consent filter of a search of one person's compartment agrees with the general filter.

A partner's search of one person's Tasks filters them with ``predicates.permitted_of_person``
(the person a bound value: one pass over the person's grants, once per statement), every other
query with ``predicates.permitted`` (the person read from each row). Both state the rules of
FHIR R4 consent.html#6.2.3; here hypothesis draws Consents (permit or deny, nested exceptions,
actors, CareTeams, purposes, classes, single resources, periods) and CareTeams, and the two
must let through exactly the same Tasks for every caller and default policy, on the engine
under test. What the audit trail records as having decided (``decision.decision_for``, one
statement) must be what the reference evaluation in Python (``decision.explain``) finds.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_gateway.consent.decision import decision_for, explain
from fhir_gateway.storage.database import Database
from tests.consent.support import caller, careteam, consent, day, provision, store, visible, visible_of_person
from tests.support.databases import empty_all_tables

SAAD, DAC = "Organization/saad", "Organization/dac"
TEAM = "CareTeam/ct1"
TASKS = ("t1", "t2", "t3")
POLICIES = ("opt-in", "care-team-opt-out")

_periods = st.sampled_from([(None, None), (day(-10), None), (None, day(-1)), (day(2), day(9))])


@st.composite
def _provisions(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    start, end = draw(_periods)
    nested = draw(st.lists(_provisions(depth + 1), max_size=1)) if depth == 0 else []
    kinds: list[str | None] = [None, "permit", "deny"] if depth else ["permit", "deny"]  # None: exception
    return provision(
        draw(st.sampled_from(kinds)),
        actors=draw(st.lists(st.sampled_from([SAAD, DAC, TEAM]), max_size=2, unique=True)) or None,
        purposes=draw(st.lists(st.sampled_from(["TREAT", "COC"]), max_size=1)) or None,
        classes=draw(st.lists(st.sampled_from(["Task", "Patient"]), max_size=1)) or None,
        actions=draw(st.lists(st.sampled_from(["access", "correct"]), max_size=1)) or None,
        data=[f"Task/{t}" for t in draw(st.lists(st.sampled_from(TASKS), max_size=1))] or None,
        start=start,
        end=end,
        nested=nested or None,
    )


_worlds = st.fixed_dictionaries(
    {
        "consents": st.lists(_provisions(), max_size=3),
        "team": st.lists(
            st.tuples(st.sampled_from([SAAD, DAC]), _periods), max_size=2, unique_by=lambda m: m[0]
        ),
    }
)


def _store_world(database: Database, world: dict[str, Any]) -> None:
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    with database.transaction(write=True) as conn:
        store(conn, "Patient", "p1", {"resourceType": "Patient"})
        for res_id in TASKS:
            store(conn, "Task", res_id, {**task, "for": {"reference": "Patient/p1"}})
        for number, prov in enumerate(world["consents"]):
            store(conn, "Consent", f"c{number}", consent("p1", prov))
        if world["team"]:
            members = [(member, start, end) for member, (start, end) in world["team"]]
            store(conn, "CareTeam", "ct1", careteam("p1", members))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=_worlds)
def test_one_persons_filter_and_audited_decision_agree_with_the_general_rules(
    engine_db: Database, world: dict[str, Any]
) -> None:
    try:
        _store_world(engine_db, world)
        with engine_db.transaction() as conn:
            for org in (SAAD, DAC):
                for purpose in ("TREAT", "COC"):
                    access = caller(org, purpose=purpose)
                    for policy in POLICIES:
                        expected = visible(conn, access, "Task", policy)
                        found = visible_of_person(conn, access, "Task", policy, "p1")
                        assert found == expected, (org, purpose, policy)
                        audited = decision_for(conn, access, "p1", "Task", policy=policy)
                        reference = explain(conn, "p1", org, purpose, "Task", policy)
                        assert (audited.permit, audited.decided_by) == (
                            reference.permit,
                            reference.decided_by,
                        ), (org, purpose, policy)
    finally:
        empty_all_tables(engine_db)
