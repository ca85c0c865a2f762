"""Storing a batch of AuditEvents so that nothing is lost and nothing holds the trail back.

Used by the audit writer process (``audit.sidecar``) and by the in-process writer
(``audit.writer``): a batch is stored in one transaction (FHIR R4 auditevent.html#6.4.4.1, rows
as ``audit.store`` makes them). A database that cannot take it now (unreachable, storage full)
leaves it to be tried again later; a batch refused for its content is stored event by event,
and an event refused alone (one the index cannot hold, a value too long for a column) is dropped
with an ``audit_event_refused`` log naming its id. Events that may be stored already (sent again
after a writer stopped) are looked up first and skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Connection, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from fhir_gateway.audit.events import AuditItem, audit_id
from fhir_gateway.audit.store import store_audit_events
from fhir_gateway.kit.errors import FhirError, ServiceUnavailable
from fhir_gateway.kit.ids import new_id
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.faults import storage_refusal
from fhir_gateway.storage.tables import resource as resource_table

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 500


def with_ids(events: list[AuditItem]) -> list[AuditItem]:
    """``events``, each given an id if it has none (``audit_event_for`` gives one): a batch
    tried or sent again must name the same events, to skip those already stored."""
    for event in events:
        if isinstance(event, dict) and not event.get("id"):  # a record has its id
            event["id"] = new_id()
    return events


def already_stored(conn: Connection, ids: list[str]) -> set[str]:
    """Which of the AuditEvents ``ids`` are stored already (asked 500 at a time: SQLite bounds
    the parameters of a statement)."""
    table = resource_table
    found: set[str] = set()
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        rows = conn.execute(
            select(table.c.res_id).where(table.c.res_type == "AuditEvent", table.c.res_id.in_(chunk))
        )
        found.update(row[0] for row in rows)
    return found


@dataclass
class Batch:
    """What was received and is not yet stored."""

    events: list[AuditItem] = field(default_factory=list)
    resent_ids: set[str] = field(default_factory=set)  # events that may be stored already
    stored_ids: set[str] = field(default_factory=set)  # events stored (or dropped) one by one
    last_seq: int | None = None
    write_now: bool = False

    def add(self, events: list[AuditItem], seq: int, *, resent: bool = False, now: bool = False) -> None:
        """Add ``events`` received under number ``seq`` (``resent``: maybe stored already;
        ``now``: to be written without waiting)."""
        self.events.extend(events)
        if resent:
            self.resent_ids.update(str(audit_id(event)) for event in events)
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self.write_now = self.write_now or now

    def store(self, database: Database) -> None:
        """Store the events in one transaction (raises if the database refuses)."""
        events = [event for event in self.events if str(audit_id(event)) not in self.stored_ids]
        with database.transaction(write=True) as conn:
            maybe_stored = self.resent_ids - self.stored_ids
            if maybe_stored:
                stored = already_stored(conn, sorted(maybe_stored))
                events = [event for event in events if audit_id(event) not in stored]
            if events:
                store_audit_events(conn, events, one_statement=False)


def try_store(database: Database, batch: Batch) -> bool:
    """Store ``batch``; False (kept, tried again later) when the database cannot take it now.

    A batch refused for its content (an event the index cannot hold, a value too long) is
    stored event by event instead: one bad event must not hold the whole trail back.
    """
    try:
        batch.store(database)
    except ServiceUnavailable as exc:  # unreachable, or its storage full: the reason, once per try
        log.error("audit_write_failed: %s", exc, extra={"audit_events": len(batch.events)})
        return False
    except (FhirError, DataError, IntegrityError):
        return _store_one_by_one(database, batch)
    except DBAPIError as exc:
        refusal = storage_refusal(exc)
        if refusal is None:
            log.exception("audit_write_failed", extra={"audit_events": len(batch.events)})
        else:  # full or read-only storage: the reason, not a stack trace per tick
            log.error("audit_write_failed: %s", refusal, extra={"audit_events": len(batch.events)})
        return False
    except SQLAlchemyError:
        log.exception("audit_write_failed", extra={"audit_events": len(batch.events)})
        return False
    return True


def _store_one_by_one(database: Database, batch: Batch) -> bool:
    """Each event of ``batch`` in a transaction of its own; an event refused alone for its
    content is dropped and logged (``audit_event_refused``, with its id), the others stored.
    False if the database stops taking any (the stored ones are then skipped on the next try)."""
    for event in batch.events:
        event_id = str(audit_id(event))
        if event_id in batch.stored_ids:
            continue
        one = Batch([event], batch.resent_ids & {event_id})
        try:
            one.store(database)
        except ServiceUnavailable:
            return False
        except (FhirError, DataError, IntegrityError) as exc:
            log.error("audit_event_refused", extra={"audit_event_id": event_id, "error": type(exc).__name__})
        except SQLAlchemyError:
            log.exception("audit_write_failed", extra={"audit_events": 1})
            return False
        batch.stored_ids.add(event_id)  # stored or dropped: a later try of the batch skips it
    return True
