"""Append-only storage of AuditEvents (FHIR R4 auditevent.html#6.4.4.1).

AuditEvents are ordinary resources in the ``resource`` table (searchable through the
normal search with ``system/AuditEvent.rs``; the person's own through patient scopes, as
the row's ``patient_id`` is the person audited). The API never updates or deletes them
(``fhir.resource_types.APPEND_ONLY_TYPES``). A request's events are written after its main
transaction, so that read transactions stay read-only and refused requests are audited
too, in bulk (one transaction, a few multi-row statements per batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from fhir_gateway.audit.events import audit_patient
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.ids import new_id
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.faults import storage_refusal
from fhir_gateway.storage.index_repository import insert_index_rows
from fhir_gateway.storage.repository import NewVersion, insert_first_versions

log = logging.getLogger(__name__)


def store_audit_events(conn: Connection, events: Sequence[dict[str, Any]]) -> list[str]:
    """Store ``events`` as new AuditEvent resources in ``conn``'s transaction; their ids."""
    moment = utcnow()
    naive = moment.replace(tzinfo=None)
    rows: list[NewVersion] = []
    bodies: list[tuple[str, str, dict[str, Any]]] = []
    for event in events:
        res_id = str(event.get("id") or new_id())
        body = {**event, "id": res_id}
        body["meta"] = {**(event.get("meta") or {}), "versionId": "1", "lastUpdated": fhir_instant(moment)}
        rows.append(NewVersion("AuditEvent", res_id, jsonutil.dumps_str(body), audit_patient(body), naive))
        bodies.append(("AuditEvent", res_id, body))
    insert_first_versions(conn, rows)
    insert_index_rows(conn, bodies)
    return [row.res_id for row in rows]


def write_audit_events(database: Database, events: Sequence[dict[str, Any]]) -> None:
    """Store ``events`` in one short write transaction of their own.

    Raises on failure: the caller (the background writer) keeps the events and retries.
    """
    if not events:
        return
    with database.transaction(write=True) as conn:
        store_audit_events(conn, events)


def try_write_audit_events(database: Database, events: Sequence[dict[str, Any]]) -> bool:
    """``write_audit_events``, logging (event ``audit_write_failed``) instead of raising."""
    try:
        write_audit_events(database, events)
    except DBAPIError as exc:
        refusal = storage_refusal(exc)
        if refusal is None:
            log.exception("audit_write_failed", extra={"audit_events": len(events)})
        else:  # full or read-only storage: the reason, not a stack trace per batch
            log.error("audit_write_failed: %s", refusal, extra={"audit_events": len(events)})
        return False
    except (SQLAlchemyError, FhirError):
        log.exception("audit_write_failed", extra={"audit_events": len(events)})
        return False
    return True
