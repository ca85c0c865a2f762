"""Append-only storage of AuditEvents (FHIR R4 auditevent.html#6.4.4.1).

AuditEvents are ordinary resources in the ``resource`` table (searchable through the
normal search with ``system/AuditEvent.rs``; the person's own through patient scopes, as
the row's ``patient_id`` is the person audited). The request's events are written after
its main transaction, in a short write transaction of their own, so that read
transactions stay read-only and refused requests are audited too. The API never updates
or deletes them (``fhir.resource_types.APPEND_ONLY_TYPES``).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from fhir_gateway.audit.events import audit_patient
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.repository import insert_first_version

log = logging.getLogger(__name__)


def _replace_index(conn: Connection, res_type: str, res_id: str, body: dict[str, Any]) -> None:
    """The search helper's ``replace_index``, when that module is installed."""
    try:
        module = importlib.import_module("fhir_gateway.storage.index_repository")
    except ModuleNotFoundError as exc:  # search indexing not wired yet
        if exc.name != "fhir_gateway.storage.index_repository":
            raise
        return
    module.replace_index(conn, res_type, res_id, body)


def store_audit_event(conn: Connection, event: dict[str, Any]) -> str:
    """Store ``event`` as version 1 of a new AuditEvent in ``conn``'s transaction; its id."""
    moment = utcnow()
    res_id = str(event.get("id") or uuid.uuid4())
    body = {**event, "id": res_id}
    body["meta"] = {**(event.get("meta") or {}), "versionId": "1", "lastUpdated": fhir_instant(moment)}
    content = jsonutil.dumps_str(body)
    naive = moment.replace(tzinfo=None)
    insert_first_version(conn, "AuditEvent", res_id, content, audit_patient(body), naive, method="POST")
    _replace_index(conn, "AuditEvent", res_id, body)
    return res_id


def write_audit_events(database: Database, events: Sequence[dict[str, Any]]) -> None:
    """Store ``events`` in one short write transaction of their own.

    The response has already been decided when this runs, so a failure is logged (event
    ``audit_write_failed``, with the count) rather than turned into an error response.
    """
    if not events:
        return
    try:
        with database.transaction(write=True) as conn:
            for event in events:
                store_audit_event(conn, event)
    except (SQLAlchemyError, FhirError):
        log.exception("audit_write_failed", extra={"audit_events": len(events)})


class AuditRecorder:
    """Collects the AuditEvents of one request, then writes them (``flush``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any] | None) -> None:
        if event is not None:
            self.events.append(event)

    def flush(self, database: Database) -> None:
        write_audit_events(database, self.events)
        self.events.clear()
