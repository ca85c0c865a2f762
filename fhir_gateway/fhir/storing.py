"""Storing a checked write (FHIR R4 http.html#create, #update; DESIGN.md, Storage).

``prepare`` does what needs no SQL of the write itself: the consent check on the person the
data belongs to, the unchanged-content test (no new version) and the ``meta`` stamps of the
new version with its search index rows. ``apply`` runs the SQL of any number of prepared
writes in a few statements (versions, history, index), then the consent grants, the
subscription outbox and the audit of each, in order. ``fhir.writes`` uses them for one write,
``fhir.write_batch`` for many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from fhir_gateway.consent import hooks
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import PreconditionFailed
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.search.indexing import extract_index_rows, patient_compartment_id
from fhir_gateway.search.row_tokens import tokens_of
from fhir_gateway.storage.bulk import Part, insert_many
from fhir_gateway.storage.index_repository import IndexWrite, delete_indexes, index_inserts
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.version_writes import (
    VersionWrite,
    history_part,
    insert_new_versions,
    write_versions,
)
from fhir_gateway.subscriptions import hooks as subscription_hooks

_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


class WriteResult(NamedTuple):
    """The stored version and whether it was created (201) or not (200). (A named tuple, as
    ``StoredRow``.)"""

    row: StoredRow
    created: bool


@dataclass(frozen=True, slots=True)
class Pending:
    """A write checked and stamped, whose SQL is still to run (``apply``): the version it
    stores, its index rows and what the hooks and the audit need."""

    version: VersionWrite
    index: IndexWrite
    body: dict[str, Any]
    interaction: str
    result: WriteResult


def prepare(
    ctx: Ctx, res_type: str, res_id: str, body: dict[str, Any], current: StoredRow | None, method: str
) -> Pending | WriteResult:
    """Check consent for ``body`` (or, for a resource of no person, the caller's ownership of
    it: consent.ownership) and stamp ``meta`` for its next version (or the first one); the
    unchanged ``current`` when ``body`` is the same content (no new version)."""
    interaction = _INTERACTIONS[method]
    patient_id = patient_compartment_id(body)
    ctx.check_write(res_type, patient_id, interaction)
    if res_type == subscription_hooks.SUBSCRIPTION:
        subscription_hooks.prepare(ctx, res_id, body)
    stored = current if current is not None and not current.deleted else None
    if stored is not None:
        ctx.check_write(res_type, stored.patient_id, interaction)
        if stored.content is not None and _same_content(stored.content, body):
            ctx.check_shared_write(res_type, res_id, body, stored, interaction, unchanged=True)
            return WriteResult(stored, created=False)
    ctx.check_shared_write(res_type, res_id, body, stored, interaction)
    moment = utcnow()
    version = 1 if current is None else current.version + 1
    body["id"] = res_id
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = fhir_instant(moment)
    body["meta"] = meta
    content = jsonutil.dumps_str(body)
    naive = moment.replace(tzinfo=None)
    rows = extract_index_rows(body)
    write = VersionWrite(res_type, res_id, content, patient_id, naive, method, current, tokens_of(rows))
    index = IndexWrite(res_type, res_id, rows, fresh=current is None)
    row = StoredRow(res_type, res_id, version, naive, False, content, patient_id, method)
    created = current is None or current.deleted
    return Pending(write, index, body, "create" if created else interaction, WriteResult(row, created))


def apply(ctx: Ctx, pending: Sequence[Pending]) -> None:
    """Run the SQL of prepared writes, a few statements for all of them (resource rows,
    history, search index), then the consent and subscription hooks and the audit of each,
    in order (FHIR R4 http.html#create, #update): subscriptions match the writes between two
    consent or subscription changes together."""
    if not pending:
        return
    store_rows(ctx.conn, rows_to_store(pending), last=_last_statement(ctx, pending))
    after_store(ctx, pending)


def _last_statement(ctx: Ctx, pending: Sequence[Pending]) -> bool:
    """Whether storing ``pending`` is the unit's last statement: a unit that writes one new
    resource and nothing else (``Ctx.single_write``: a REST create), of a type whose hooks write
    nothing (no consent grants, members or subscription), when no active subscription of its
    type is to be notified (known without asking: ``subscriptions.hooks.notifies_nothing``).
    ``storage.version_writes.insert_new_versions`` then stores it in a statement that commits on
    its own when nothing before began the unit's transaction."""
    if not ctx.single_write or len(pending) != 1:
        return False
    version = pending[0].version
    return (
        version.current is None
        and version.res_type not in _STATE_TYPES
        and subscription_hooks.notifies_nothing(ctx, version.res_type)
    )


@dataclass(frozen=True)
class RowsToStore:
    """The rows of prepared writes, per table (``rows_to_store``), for ``store_rows``."""

    versions: list[VersionWrite]
    indexes: list[IndexWrite]
    history_and_index: list[Part]


def rows_to_store(pending: Sequence[Pending]) -> RowsToStore:
    """The version, history and search index rows of ``pending`` (CPU only, no database)."""
    versions = [p.version for p in pending]
    indexes = [p.index for p in pending]
    return RowsToStore(versions, indexes, [history_part(versions), *index_inserts(indexes)])


def store_rows(conn: Connection, rows: RowsToStore, *, last: bool = False) -> None:
    """The SQL part of ``apply``: versions, history and search index rows (PreconditionFailed
    when a resource changed meanwhile: nothing of them must be kept). Only the connection is
    used (``fhir.background_flush`` runs it on a thread of its own). ``last``: no statement of the
    unit follows (``_last_statement``)."""
    versions = rows.versions
    if not versions:
        return
    if all(v.current is None for v in versions):  # creates: resources and index rows in one statement
        insert_new_versions(conn, versions, rows.history_and_index, last=last)
    else:
        stale = write_versions(conn, versions)
        if stale:
            raise PreconditionFailed(
                f"{stale[0].res_type}/{stale[0].res_id} was changed by another request; read it again"
            )
        delete_indexes(conn, rows.indexes)
        insert_many(conn, rows.history_and_index)  # one statement on PostgreSQL


def after_store(ctx: Ctx, pending: Sequence[Pending]) -> None:
    """What follows the SQL of ``pending`` (``store_rows``): the consent and subscription
    hooks and the audit of each write, in order."""
    start = 0
    for end in range(1, len(pending) + 1):
        if end == len(pending) or pending[end].version.res_type in _STATE_TYPES:
            _after_store(ctx, pending[start:end])
            start = end


# Writes that change what a subscriber may see (consent) or who subscribes: the writes before
# them are matched first, so that each change is matched with the decisions of its moment.
_STATE_TYPES = frozenset({"Consent", "CareTeam", subscription_hooks.SUBSCRIPTION})


def _after_store(ctx: Ctx, pending: Sequence[Pending]) -> None:
    """The hooks and audit of writes of which only the first may change consent or subscriptions."""
    for p in pending:
        fresh = p.version.current is None  # an id never stored: no grants or members yet
        hooks.after_write(ctx.conn, p.version.res_type, p.version.res_id, p.body, fresh=fresh)
    stored = []
    for p in pending:
        res_type, res_id, patient_id = p.version.res_type, p.version.res_id, p.version.patient_id
        person = res_id if res_type == "Patient" else patient_id
        stored.append(subscription_hooks.Stored(res_type, res_id, p.body, p.result.row.version, person))
    subscription_hooks.after_store(ctx, stored)
    for p in pending:
        ctx.audit(p.interaction, p.version.res_type, p.version.res_id, p.version.patient_id)


def _same_content(stored: str, body: dict[str, Any]) -> bool:
    """True when ``body`` equals the stored resource apart from ``meta`` version stamps."""
    old = jsonutil.loads(stored)
    old_meta = {
        k: v for k, v in (old.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")
    }
    new = dict(body)
    new_meta = {
        k: v for k, v in (new.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")
    }
    new.setdefault("id", old.get("id"))
    return bool(old == new and old_meta == new_meta)
