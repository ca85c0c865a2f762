"""Matching writes against subscriptions costs the same per write however many rows are
stored already or written in the same batch (issue 7; a partner import of 100,000 rows must
not slow down as it goes): the versions stored together are matched together, by id, one
query per subscription, and their notifications queued in one statement per subscription.

Counted in SQL statements and in the ids matched, never in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, func, select

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.fhir.write_batch import WriteBatch
from fhir_gateway.settings import Settings
from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.outbox_tables import subscription_event
from fhir_gateway.storage.subscription_repository import SubscriptionOwner
from fhir_gateway.subscriptions import hooks

TRUSTED = AccessContext("test:import", parse_scopes("system/*.cruds"), trusted=True)
PARTNER = SubscriptionOwner("partner", "Organization/saad", None, False, False, "system/Task.rs", "COC")


def _task(n: int, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "identifier": [{"system": "urn:test:visit", "value": str(n)}],
        "for": {"reference": "Patient/p1"},
        "owner": {"reference": "Organization/saad"},
    }


def _partner_in_circle_of_care(database: Database, settings: Settings) -> None:
    """The partner is in Patient/p1's CareTeam: it may see the person's Tasks (a Task of no
    person it would not see at all)."""
    with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = WriteBatch(ctx, size=10)
        _join_circle_of_care(batch)
        batch.flush()


def _join_circle_of_care(batch: WriteBatch) -> None:
    """Patient/p1 and its CareTeam, whose member is the partner."""
    batch.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"}, None)
    team = {
        "resourceType": "CareTeam",
        "id": "team-p1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"member": {"reference": "Organization/saad"}}],
    }
    batch.update("CareTeam", "team-p1", team, None)


@pytest.fixture
def subscribed(database: Database) -> Database:
    """Two active subscriptions of a partner: one matches the completed visits, one nothing."""
    with database.transaction(write=True) as conn:
        for sub_id, criteria in (("done", "status=completed"), ("none", "status=cancelled")):
            subscription_repository.save(
                conn,
                sub_id,
                res_type="Task",
                criteria=criteria,
                endpoint="https://hooks.partner.example/fhir",
                headers=(),
                payload=None,
                status="active",
                owner=PARTNER,
            )
    return database


def _batch(database: Database, settings: Settings, first: int, size: int) -> None:
    """Write ``size`` Tasks in one batch (``first``: the number of the first), half completed."""
    with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = WriteBatch(ctx, size=10_000)
        for n in range(first, first + size):
            batch.create("Task", _task(n, "completed" if n % 2 else "requested"))
        batch.flush()


@dataclass
class Spy:
    """The SQL statements run by subscription matching, and the ids each matching query got."""

    statements: int = 0
    ids: list[int] = field(default_factory=list)


@pytest.fixture
def spy(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    found = Spy()
    inside = False
    after_store, find_ids = hooks.after_store, hooks.find_ids

    def counting_after_store(*args: Any) -> None:
        nonlocal inside
        inside = True
        try:
            after_store(*args)
        finally:
            inside = False

    def counting_find_ids(conn: Any, request: Any, visible: Any, limit: int) -> list[tuple[str, str]]:
        found.ids.append(sum(len(ids) for ids in request.ids))
        return find_ids(conn, request, visible, limit)

    def count(*_: Any) -> None:
        if inside:
            found.statements += 1

    monkeypatch.setattr(hooks, "after_store", counting_after_store)
    monkeypatch.setattr(hooks, "find_ids", counting_find_ids)
    event.listen(database.engine, "before_cursor_execute", count)
    yield found
    event.remove(database.engine, "before_cursor_execute", count)


def test_matching_work_per_write_does_not_grow(subscribed: Database, settings: Settings, spy: Spy) -> None:
    _partner_in_circle_of_care(subscribed, settings)
    rounds = [(0, 100), (100, 100), (200, 100), (300, 400)]  # rows already stored: 0, 100, 200, 300
    statements = []
    for first, size in rounds:
        spy.statements = 0
        spy.ids.clear()
        _batch(subscribed, settings, first, size)
        statements.append(spy.statements)
        # each subscription considered exactly the writes of this batch, in one query, none of
        # the rows stored before
        assert spy.ids == [size, size]
    # the same statements for 100 writes with 0, 100 or 200 rows stored, and for 400 writes:
    # the active subscriptions, one matching query each, the notifications queued in two, and
    # the consent decision that lets the partner learn of them (for the audit), once per person
    assert statements == [6, 6, 6, 6]
    with subscribed.transaction() as conn:
        queued = conn.execute(
            select(
                subscription_event.c.sub_id, func.count(), func.max(subscription_event.c.event_number)
            ).group_by(subscription_event.c.sub_id)
        ).all()
    assert [tuple(row) for row in queued] == [("done", 350, 350)]  # numbered 1..350, in order


def test_a_consent_change_in_a_batch_is_seen_by_the_writes_after_it_only(
    subscribed: Database, settings: Settings, spy: Spy
) -> None:
    """The subscriber's consent at the moment of each change: a person's circle of care that
    the partner joins in the middle of a batch lets it learn of the changes after, not before."""
    with unit_of_work(subscribed, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = WriteBatch(ctx, size=10_000)
        batch.create("Task", _task(1, "completed"))  # before the partner joins p1's CareTeam
        _join_circle_of_care(batch)
        after = _task(2, "completed")
        created, _ = batch.create("Task", after)
        batch.flush()
    with subscribed.transaction() as conn:
        queued = conn.execute(select(subscription_event.c.res_id, subscription_event.c.event_number)).all()
    assert [tuple(row) for row in queued] == [(created.row.res_id, 1)]
    assert spy.ids == [1, 1, 1, 1]  # the Task before the CareTeam, then the one after: apart
