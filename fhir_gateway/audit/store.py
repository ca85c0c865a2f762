"""Append-only storage of AuditEvents (FHIR R4 auditevent.html#6.4.4.1).

AuditEvents are ordinary resources in the ``resource`` table (searchable through the
normal search with ``system/AuditEvent.rs``; the person's own through patient scopes, as
the row's ``patient_id`` is the person audited); the token values of the events this module
writes are one ``audit_terms`` row each rather than index rows (``search.audit_terms``). The
API never updates or deletes them (``fhir.resource_types.APPEND_ONLY_TYPES``). A request's
events are written after its main transaction, so that read transactions stay read-only and
refused requests are audited too, in bulk: by the audit writer process (``audit.sidecar``, the
default) or the in-process writer (``audit.writer``), a batch in one transaction
(``audit.batch_store``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from fhir_gateway.audit.events import AuditItem, audit_patient, event_of, record_kind
from fhir_gateway.audit.index_rows import audit_index_rows, event_reference_keys, recorded_range
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.ids import new_id
from fhir_gateway.kit.lru import Lru
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.search.audit_terms import Unfit, terms_of
from fhir_gateway.search.indexing import extract_index_rows
from fhir_gateway.storage.audit_refs import audit_terms_row
from fhir_gateway.storage.bulk import Part, insert_many
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.index_repository import IndexWrite, index_inserts
from fhir_gateway.storage.tables import audit_terms
from fhir_gateway.storage.version_writes import VersionWrite, new_resources_part


@dataclass(frozen=True)
class PreparedAudit:
    """AuditEvents turned into the rows that store them (``prepare_audit_events``)."""

    # the resource, token terms (``search.audit_terms``) and search index rows, per table
    # (resource first; an AuditEvent, never changed, has no history row)
    parts: list[Part]

    @property
    def ids(self) -> list[str]:
        """The AuditEvents' ids, in order."""
        return [row[1] for row in self.parts[0][1]] if self.parts else []


def prepare_audit_events(events: Sequence[AuditItem], *, refs_in_terms: bool = False) -> PreparedAudit:
    """The rows of ``events`` as new AuditEvent resources, version 1 (CPU only, no database).

    ``refs_in_terms`` (for PostgreSQL, where ``storage.bulk`` moves an AuditEvent's reference and
    date rows into its ``audit_terms`` row: ``storage.audit_refs``): the events of a kind whose
    terms are known get that row whole at once, without index rows to move."""
    moment = utcnow()
    naive = moment.replace(tzinfo=None)
    instant = fhir_instant(moment)
    writes: list[VersionWrite] = []
    indexes: list[IndexWrite] = []
    terms: list[Sequence[Any]] = []  # refs and date: ``storage.audit_refs``
    for item in events:
        event = event_of(item)  # an access's record: the event it describes
        res_id = str(event.get("id") or new_id())
        body = {**event, "id": res_id}
        body["meta"] = {**(event.get("meta") or {}), "versionId": "1", "lastUpdated": instant}
        writes.append(
            VersionWrite(
                "AuditEvent", res_id, jsonutil.dumps_str(body), audit_patient(body), naive, "POST", None
            )
        )
        kind = record_kind(item) if isinstance(item, list) else None
        known = _kind_terms.get(kind) if kind is not None else None
        if known is not None and refs_in_terms:
            low, high = recorded_range(body)
            terms.append(audit_terms_row(res_id, known, event_reference_keys(body), low, high))
            continue
        rows = audit_index_rows(body, tokens=known is None)
        if rows is None:  # a shape it does not know: the generic extraction, all in the index
            rows = extract_index_rows(body)
        elif known is not None:
            terms.append((res_id, known, None, None, None))
        elif "token" in rows:
            with contextlib.suppress(Unfit):  # Unfit: the tokens stay in the index
                found = terms_of(rows["token"])
                terms.append((res_id, found, None, None, None))
                rows = {name: found_rows for name, found_rows in rows.items() if name != "token"}
                if kind is not None:
                    _kind_terms.put(kind, found)
        indexes.append(IndexWrite("AuditEvent", res_id, rows, True))
    parts = [new_resources_part(writes)]
    if terms:
        parts.append((audit_terms, terms))
    return PreparedAudit([*parts, *index_inserts(indexes)])


# The terms of the events of each kind of access record (``events.record_kind``): every event of
# a kind has the same token values, so its token rows need not be made to find its terms again.
_kind_terms: Lru[str] = Lru(1024)


def joined(prepared: Sequence[PreparedAudit]) -> PreparedAudit:
    """Several ``PreparedAudit`` as one (their rows per table, in order)."""
    by_table: dict[Any, list[Sequence[Any]]] = {}
    for one in prepared:
        for table, rows in one.parts:
            by_table.setdefault(table, []).extend(rows)
    return PreparedAudit(list(by_table.items()))


def insert_audit_events(
    conn: Connection, prepared: PreparedAudit, *, one_statement: bool = True
) -> list[str]:
    """Insert ``prepared`` in ``conn``'s transaction; the ids.

    ``one_statement`` (PostgreSQL): all tables' rows as JSON in one statement, whatever their
    number, which costs the serving process's event loop least; otherwise each table's rows the
    way ``storage.bulk.insert_tuples`` finds cheapest for their number (``COPY`` from a few
    hundred), which costs PostgreSQL about a sixth less per event: the audit writer process's way.
    """
    insert_many(conn, prepared.parts, whatever_size=one_statement)
    return prepared.ids


def store_audit_events(
    conn: Connection, events: Sequence[AuditItem], *, one_statement: bool = True
) -> list[str]:
    """Store ``events`` as new AuditEvent resources in ``conn``'s transaction; their ids."""
    prepared = prepare_audit_events(events, refs_in_terms=conn.dialect.name == "postgresql")
    return insert_audit_events(conn, prepared, one_statement=one_statement)


def write_audit_events(database: Database, events: Sequence[AuditItem]) -> None:
    """Store ``events`` in one short write transaction of their own.

    Raises on failure: the caller (the background writer) keeps the events and retries.
    """
    if not events:
        return
    with database.transaction(write=True) as conn:
        store_audit_events(conn, events)
