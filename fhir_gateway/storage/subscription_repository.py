"""SQL of the subscription engine: subscriptions, the outbox, leases (issue 7).

The outbox pattern: ``add_events`` runs in the transaction of the change it reports, so a
change commits with its notifications or not at all. It increments the subscription's
counter with an ``UPDATE``: its row lock orders concurrent writers, so the numbers follow
commit order. Workers ``claim`` subscriptions (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so that several workers never take the same one) and hold them by a lease
that expires if the worker dies.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    ScalarSelect,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fhir_gateway.storage.auth_tables import oauth_client
from fhir_gateway.storage.outbox_tables import subscription, subscription_event, subscription_stamp
from fhir_gateway.storage.repository import version_content
from fhir_gateway.storage.tables import resource, resource_history

sub, ev = subscription, subscription_event


@dataclass(frozen=True)
class SubscriptionOwner:
    """The client a Subscription belongs to, as it was when it subscribed."""

    client_id: str
    organization: str | None
    practitioner: str | None
    trusted: bool
    verify: bool
    scope: str
    purpose: str


@dataclass(frozen=True)
class SubscriptionRow:
    """One subscription with its owner and delivery state."""

    sub_id: str
    owner: SubscriptionOwner
    res_type: str
    criteria: str
    endpoint: str
    headers: tuple[str, ...]
    payload: str | None
    status: str
    failures: int


@dataclass(frozen=True)
class EventRow:
    """One notification waiting in the outbox."""

    event_id: int
    sub_id: str
    event_number: int
    res_type: str
    res_id: str
    version: int
    attempts: int
    content: str | None = None  # the version's JSON, None when deleted since


def _subscription(r: Any) -> SubscriptionRow:
    owner = SubscriptionOwner(
        r.owner_client,
        r.owner_organization,
        r.owner_practitioner,
        r.owner_trusted,
        r.owner_verify,
        r.owner_scope,
        r.owner_purpose,
    )
    return SubscriptionRow(
        r.sub_id,
        owner,
        r.res_type,
        r.criteria,
        r.endpoint,
        tuple(json.loads(r.headers)),
        r.payload,
        r.status,
        r.failures,
    )


def get(conn: Connection, sub_id: str) -> SubscriptionRow | None:
    found = conn.execute(select(sub).where(sub.c.sub_id == sub_id)).first()
    return _subscription(found) if found else None


def save(
    conn: Connection,
    sub_id: str,
    *,
    res_type: str,
    criteria: str,
    endpoint: str,
    headers: tuple[str, ...],
    payload: str | None,
    status: str,
    owner: SubscriptionOwner,
) -> None:
    """Insert the subscription (owned by ``owner``) or update what it asks for and its status.

    Going back to ``requested`` or ``active`` starts afresh: no failure count, no backoff.
    """
    values: dict[str, Any] = {
        "res_type": res_type,
        "criteria": criteria,
        "endpoint": endpoint,
        "headers": json.dumps(list(headers)),
        "payload": payload,
        "status": status,
    }
    if status in ("requested", "active"):
        values.update(failures=0, retry_at=None)
    restamp(conn)
    if conn.execute(update(sub).where(sub.c.sub_id == sub_id).values(**values)).rowcount:
        return
    conn.execute(
        insert(sub).values(
            sub_id=sub_id,
            owner_client=owner.client_id,
            owner_organization=owner.organization,
            owner_practitioner=owner.practitioner,
            owner_trusted=owner.trusted,
            owner_verify=owner.verify,
            owner_scope=owner.scope,
            owner_purpose=owner.purpose,
            events_count=0,
            failures=0,
            **{k: v for k, v in values.items() if k not in ("failures", "retry_at")},
        )
    )


def remove(conn: Connection, sub_id: str) -> None:
    """A deleted Subscription: its row and its undelivered notifications go."""
    restamp(conn)
    conn.execute(delete(ev).where(ev.c.sub_id == sub_id))
    conn.execute(delete(sub).where(sub.c.sub_id == sub_id))


def restamp(conn: Connection) -> None:
    """Replace the subscriptions' stamp in ``conn``'s transaction (every change of the set of
    subscriptions does): the active subscriptions known for the old stamp are out of date.
    One upsert: the row comes back if it was deleted (a database emptied table by table),
    and two transactions doing so at once do not clash."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    upsert = dialect_insert(subscription_stamp).values(id=1, stamp=secrets.token_hex(16))
    conn.execute(upsert.on_conflict_do_update(index_elements=["id"], set_={"stamp": upsert.excluded.stamp}))


def stamp_value() -> ScalarSelect[str]:
    """The subscriptions' stamp as a scalar sub-query (NULL without its row), to fold into
    a statement that runs anyway."""
    return select(subscription_stamp.c.stamp).where(subscription_stamp.c.id == 1).scalar_subquery()


def active_by_type(conn: Connection) -> tuple[str | None, dict[str, list[SubscriptionRow]]]:
    """The subscriptions' stamp and the active subscriptions per type, in one statement (one
    snapshot: the rows are those of that stamp)."""
    stamped = select(stamp_value().label("stamp")).subquery()
    rows = conn.execute(
        select(stamped.c.stamp, sub)
        .select_from(stamped.outerjoin(sub, sub.c.status == "active"))
        .order_by(sub.c.sub_id)
    ).all()
    found: dict[str, list[SubscriptionRow]] = {}
    for row in rows:
        if row.sub_id is not None:
            found.setdefault(row.res_type, []).append(_subscription(row))
    return (rows[0].stamp if rows else None), found


def add_events(conn: Connection, sub_id: str, changes: Sequence[tuple[str, str, int]], now: datetime) -> None:
    """Queue one notification per ``(res_type, res_id, version)`` in the current transaction,
    numbered in order after the subscription's last event.

    One UPDATE of the subscription's counter for all of them (PostgreSQL keeps every version
    of a row updated again and again in one transaction until it ends, and each UPDATE walks
    them: one per change would make a long import quadratic), one INSERT for their rows.
    """
    if not changes:
        return
    last = conn.execute(
        update(sub)
        .where(sub.c.sub_id == sub_id)
        .values(events_count=sub.c.events_count + len(changes))
        .returning(sub.c.events_count)
    ).scalar_one()
    first = int(last) - len(changes) + 1
    conn.execute(
        insert(ev),
        [
            {
                "sub_id": sub_id,
                "event_number": first + n,
                "res_type": res_type,
                "res_id": res_id,
                "version": version,
                "created_at": now,
                "state": "pending",
                "attempts": 0,
            }
            for n, (res_type, res_id, version) in enumerate(changes)
        ],
    )


def claim(
    conn: Connection, worker: str, now: datetime, lease_seconds: float, limit: int
) -> list[SubscriptionRow]:
    """Lease up to ``limit`` subscriptions that have work: a handshake, a due notification, or
    an owner revoked since (the worker turns those off)."""
    pending = exists().where(ev.c.sub_id == sub.c.sub_id, ev.c.state == "pending")
    revoked = and_(
        sub.c.owner_verify,
        exists().where(oauth_client.c.client_id == sub.c.owner_client, oauth_client.c.revoked),
    )
    candidates = (
        select(sub.c.sub_id)
        .where(
            or_(sub.c.status == "requested", and_(sub.c.status == "active", or_(pending, revoked))),
            or_(sub.c.lease_until.is_(None), sub.c.lease_until < now),
            or_(sub.c.retry_at.is_(None), sub.c.retry_at <= now),
        )
        .order_by(sub.c.sub_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [r.sub_id for r in conn.execute(candidates)]
    if not ids:
        return []
    until = now + timedelta(seconds=lease_seconds)
    conn.execute(update(sub).where(sub.c.sub_id.in_(ids)).values(lease_owner=worker, lease_until=until))
    return [_subscription(r) for r in conn.execute(select(sub).where(sub.c.sub_id.in_(ids)))]


def release(conn: Connection, sub_id: str, worker: str) -> None:
    conn.execute(
        update(sub)
        .where(sub.c.sub_id == sub_id, sub.c.lease_owner == worker)
        .values(lease_owner=None, lease_until=None)
    )


def pending_events(conn: Connection, sub_id: str, limit: int) -> list[EventRow]:
    """The oldest undelivered notifications of a subscription, in event order, with the
    resource version each one reports (one query): the current one from ``resource``, an earlier
    one from ``resource_history``; none for a deletion."""
    h, r = resource_history, resource

    def same(t: Any) -> ColumnElement[bool]:
        return and_(t.c.res_type == ev.c.res_type, t.c.res_id == ev.c.res_id, t.c.version == ev.c.version)

    rows = conn.execute(
        select(ev, func.coalesce(h.c.content, version_content(r)).label("content"))
        .select_from(ev.outerjoin(h, same(h)).outerjoin(r, same(r)))
        .where(ev.c.sub_id == sub_id, ev.c.state == "pending")
        .order_by(ev.c.event_number)
        .limit(limit)
    )
    return [
        EventRow(r.event_id, r.sub_id, r.event_number, r.res_type, r.res_id, r.version, r.attempts, r.content)
        for r in rows
    ]


def mark_delivered(
    conn: Connection, sub_id: str, event_ids: list[int], now: datetime, worker: str, lease_until: datetime
) -> bool:
    """These events reached the endpoint; the worker's lease is renewed. False when the lease
    was lost (another worker may have taken the subscription over: stop delivering)."""
    if event_ids:
        conn.execute(
            update(ev)
            .where(ev.c.event_id.in_(event_ids))
            .values(state="delivered", delivered_at=now, attempts=ev.c.attempts + 1, last_error=None)
        )
    renewed = conn.execute(
        update(sub)
        .where(sub.c.sub_id == sub_id, sub.c.lease_owner == worker)
        .values(failures=0, retry_at=None, lease_until=lease_until)
    )
    return bool(renewed.rowcount)


def record_failure(
    conn: Connection, sub_id: str, event_id: int | None, error: str, retry_at: datetime
) -> int:
    """One more failed attempt; the subscription waits until ``retry_at``. Its failure count."""
    if event_id is not None:
        conn.execute(
            update(ev)
            .where(ev.c.event_id == event_id)
            .values(attempts=ev.c.attempts + 1, last_error=error[:500])
        )
    return int(
        conn.execute(
            update(sub)
            .where(sub.c.sub_id == sub_id)
            .values(failures=sub.c.failures + 1, retry_at=retry_at)
            .returning(sub.c.failures)
        ).scalar_one()
    )


def outbox_depth(conn: Connection) -> int:
    """Notifications not yet delivered (for metrics)."""
    return int(conn.execute(select(func.count()).select_from(ev).where(ev.c.state == "pending")).scalar_one())
