"""The first statement of a write unit of work: its client's check and the subscriptions' stamp.

A write unit first checks that its client is still registered and not revoked
(``auth.validation``: revocation takes effect at once). The same statement reads the
subscriptions' stamp (``storage.outbox_tables.subscription_stamp``), with which the write finds
the active subscriptions it must notify (FHIR R4 subscription.html) without asking for them
again while they have not changed (``subscriptions.active``): one round trip where there were
two.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from fhir_gateway.storage.auth_tables import oauth_client
from fhir_gateway.storage.subscription_repository import stamp_value


@dataclass(frozen=True)
class WriteOpening:
    """What a write unit's first statement found."""

    client_active: bool  # registered and not revoked
    subscriptions_stamp: str | None  # None when the database has no stamp row


_OPENING = select(oauth_client.c.revoked, stamp_value().label("stamp")).where(
    oauth_client.c.client_id == bindparam("opening_client")
)


def open_write(conn: Connection, client_id: str) -> WriteOpening:
    """The client's check and the subscriptions' stamp, in one indexed lookup."""
    row = conn.execute(_OPENING, {"opening_client": client_id}).first()
    if row is None:
        return WriteOpening(False, None)
    return WriteOpening(row.revoked is False, row.stamp)
