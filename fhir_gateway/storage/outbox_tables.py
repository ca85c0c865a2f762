"""Tables of the subscription engine: who subscribed to what, and the notification outbox.

FHIR R4 subscription.html: a Subscription's ``criteria`` and ``channel`` are copied on write
into ``subscription`` (with its owner, the OAuth client that created it, whose scopes and
consent decide what it may learn). A change that matches writes one ``subscription_event``
row in the same transaction as the change (transactional outbox), numbered per
subscription (``event_number``) so that receivers can deduplicate and see gaps. Workers
claim subscriptions by lease (``lease_owner``, ``lease_until``) and deliver their events in
``event_number`` order; ``retry_at`` holds a failing subscription back (backoff).

``subscription_stamp`` holds one random value, replaced in the transaction of every change to
the set of subscriptions (``subscription_repository.save`` and ``remove``). A write reads it in
its first statement, together with its client's check, and a process that already knows the
active subscriptions of that stamp matches against them without querying them again
(``subscriptions.active``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, Table, Text

from fhir_gateway.storage.tables import ID_LEN, TYPE_LEN, metadata

subscription = Table(
    "subscription",
    metadata,
    Column("sub_id", String(ID_LEN), primary_key=True),
    Column("owner_client", String(255), nullable=False),
    Column("owner_organization", String(TYPE_LEN + 1 + ID_LEN), nullable=True),
    Column("owner_practitioner", String(TYPE_LEN + 1 + ID_LEN), nullable=True),
    Column("owner_trusted", Boolean, nullable=False, default=False),
    Column("owner_verify", Boolean, nullable=False, default=False),  # a registered client: check revocation
    Column("owner_scope", Text, nullable=False),
    Column("owner_purpose", String(64), nullable=False),
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("criteria", Text, nullable=False),  # the query part of Subscription.criteria
    Column("endpoint", Text, nullable=False),
    Column("headers", Text, nullable=False),  # JSON list of "Name: value"
    Column("payload", String(128), nullable=True),  # mime type, or NULL for an empty (ping) notification
    Column("status", String(16), nullable=False),  # requested | active | error | off
    Column("events_count", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed attempts
    Column("retry_at", DateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Index("ix_subscription_type_status", "res_type", "status"),
    Index("ix_subscription_status_retry", "status", "retry_at"),
)

subscription_stamp = Table(
    "subscription_stamp",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("stamp", String(32), nullable=False),
)

subscription_event = Table(
    "subscription_event",
    metadata,
    Column("event_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("sub_id", String(ID_LEN), nullable=False),
    Column("event_number", Integer, nullable=False),
    Column("res_type", String(TYPE_LEN), nullable=False),
    Column("res_id", String(ID_LEN), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", DateTime, nullable=True),
    Index("ix_subscription_event_queue", "sub_id", "state", "event_number"),
    Index("ix_subscription_event_state", "state", "sub_id"),
)
