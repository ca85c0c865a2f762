"""The first statement of a write unit of work: its client's check and the subscriptions' stamp.

A write unit first checks that its client is still registered and not revoked
(``auth.validation``: revocation takes effect at once). The same statement reads the
subscriptions' stamp (``storage.outbox_tables.subscription_stamp``), with which the write finds
the active subscriptions it must notify (FHIR R4 subscription.html) without asking for them
again while they have not changed (``subscriptions.active``), and, for a partner's create or
update, the consent decision on the person it writes for (``consent.visibility.write_probe``):
one round trip where there were three. It is read before the unit's transaction begins
(``direct``'s ``begin=False``: under READ COMMITTED a statement sees what was committed when it
began, in a transaction or not), so that a unit whose only write is its last statement needs no
transaction at all (``fhir.storing.apply``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from fhir_gateway.kit.lru import Lru
from fhir_gateway.storage import direct
from fhir_gateway.storage.auth_tables import oauth_client
from fhir_gateway.storage.subscription_repository import stamp_value


@dataclass(frozen=True)
class WriteOpening:
    """What a write unit's first statement found."""

    client_active: bool  # registered and not revoked
    subscriptions_stamp: str | None  # None when the database has no stamp row
    also: tuple[Any, ...] = ()  # the values of the columns ``open_write`` was asked for


_OPENING = select(oauth_client.c.revoked, stamp_value().label("stamp")).where(
    oauth_client.c.client_id == bindparam("opening_client")
)
_with_columns: Lru[tuple[Select[Any], Select[Any]]] = Lru(1024)


def _opening(also: Select[Any] | None) -> Select[Any]:
    """``_OPENING`` with the select list of ``also`` (a shared statement: built once per one)."""
    if also is None:
        return _OPENING

    def build() -> tuple[Select[Any], Select[Any]]:
        return also, _OPENING.add_columns(*also.selected_columns)

    owner, query = _with_columns.get_or_build(id(also), build)
    if owner is not also:  # an id reused after the first statement was freed
        owner, query = build()
        _with_columns.put(id(also), (owner, query))
    return query


def open_write(
    conn: Connection,
    client_id: str,
    also: Select[Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> WriteOpening:
    """The client's check and the subscriptions' stamp, in one indexed lookup, with the values of
    the select list of ``also`` (a one-row statement of scalar columns; its parameters in
    ``params``): what else the unit will need first, such as the consent decision on the person
    it writes for (``consent.visibility.write_probe``)."""
    row = direct.first(conn, _opening(also), {"opening_client": client_id, **(params or {})}, begin=False)
    if row is None:
        return WriteOpening(False, None)
    return WriteOpening(row.revoked is False, row.stamp, tuple(row[2:]))
