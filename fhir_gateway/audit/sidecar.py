"""The audit writer process: stores the AuditEvents a serving process sends it.

Run by ``audit.process_writer`` as ``python -m fhir_gateway.audit.sidecar`` (one per serving
process), so that turning events into rows and sending them (FHIR R4 auditevent.html#6.4.4.1,
stored as in ``audit.store``) takes none of the serving process's interpreter time.

Protocol: lines on standard input, answers on standard output.

- ``E<seq> <events>``: a JSON array of AuditEvents (each with its id), the frame numbered ``seq``;
- ``R<seq> <events>``: the same frame sent again to a new writer after the previous one
  stopped; its events already stored (committed but not acknowledged) are skipped;
- ``F<seq>``: write what was received now, without waiting for the next tick.

After each committed write the process answers ``<seq>``: every frame up to ``seq`` is stored.
Events are written every ``FHIR_GATEWAY_AUDIT_FLUSH_SECONDS`` or as soon as ``MAX_BATCH`` wait,
in one transaction. A write the database cannot take now (unreachable, storage full) is kept
and tried again at the next tick; a batch refused for its content is stored event by event, and
an event refused alone (one the index cannot hold) is dropped with an ``audit_event_refused``
log naming its id, so that one bad event does not hold the trail back. At the end of its
input (the serving process closed it, or died) it writes what is left and stops; it ignores
SIGINT and SIGTERM, which a terminal or a service manager sends to the whole process group.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from fhir_gateway.audit.store import store_audit_events
from fhir_gateway.kit.errors import FhirError, ServiceUnavailable
from fhir_gateway.kit.gc_tuning import settle_after_startup
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.faults import storage_refusal
from fhir_gateway.storage.tables import resource as resource_table

log = logging.getLogger(__name__)

MAX_BATCH = 500
LOOKUP_CHUNK = 500
RETRY_SECONDS = 1.0  # between two tries of a refused write at the end of the input
END_TRIES = 30  # how long (in tries) the last events are tried once the input has ended


@dataclass
class Frame:
    """One line of the serving process."""

    kind: str  # "E", "R" or "F"
    seq: int
    events: list[dict[str, Any]] = field(default_factory=list)


def parse_frame(line: bytes) -> Frame:
    """The frame written on ``line`` (``ValueError`` if it is not one)."""
    kind, rest = chr(line[0]), line[1:].rstrip(b"\n")
    if kind == "F":
        return Frame(kind, int(rest))
    if kind not in ("E", "R"):
        raise ValueError(f"unknown frame kind {kind!r}")
    seq, _, body = rest.partition(b" ")
    events = orjson.loads(body)
    if not isinstance(events, list) or not all(
        isinstance(event, dict) and isinstance(event.get("id"), str) for event in events
    ):
        raise ValueError("a frame's events must be a JSON array of objects, each with its id")
    return Frame(kind, int(seq), events)


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

    events: list[dict[str, Any]] = field(default_factory=list)
    resent_ids: set[str] = field(default_factory=set)  # events that may be stored already
    stored_ids: set[str] = field(default_factory=set)  # events stored (or dropped) one by one
    last_seq: int | None = None
    write_now: bool = False

    def add(self, frame: Frame) -> None:
        self.events.extend(frame.events)
        if frame.kind == "R":
            self.resent_ids.update(str(event["id"]) for event in frame.events)
        self.last_seq = frame.seq if self.last_seq is None else max(self.last_seq, frame.seq)
        self.write_now = self.write_now or frame.kind == "F"

    def store(self, database: Database) -> None:
        """Store the events in one transaction (raises if the database refuses)."""
        events = [event for event in self.events if str(event["id"]) not in self.stored_ids]
        with database.transaction(write=True) as conn:
            maybe_stored = self.resent_ids - self.stored_ids
            if maybe_stored:
                stored = already_stored(conn, sorted(maybe_stored))
                events = [event for event in events if event["id"] not in stored]
            if events:
                store_audit_events(conn, events, one_statement=False)


def _try_store(database: Database, batch: Batch) -> bool:
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
        event_id = str(event.get("id"))
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


def _frames(source: BinaryIO, into: queue.Queue[Frame | None]) -> None:
    """Read ``source`` line by line into ``into``; ``None`` at its end."""
    for line in iter(source.readline, b""):
        try:
            into.put(parse_frame(line))
        except ValueError:
            log.error("audit_frame_refused")
    into.put(None)


def _answer(out: BinaryIO, seq: int) -> None:
    out.write(b"%d\n" % seq)
    out.flush()


def serve(database: Database, source: BinaryIO, out: BinaryIO, interval: float) -> None:
    """Store the frames of ``source`` until its end, answering on ``out``."""
    frames: queue.Queue[Frame | None] = queue.Queue()
    threading.Thread(target=_frames, args=(source, frames), name="audit-frames", daemon=True).start()
    batch = Batch()
    ended = backing_off = False
    due = time.monotonic() + interval  # when the batch is written at the latest
    while not ended:
        try:
            frame = frames.get(timeout=max(0.0, due - time.monotonic()))
        except queue.Empty:
            frame = Frame("", -1)  # nothing came: the batch is due
        if frame is None:
            ended = True
        elif frame.kind:
            batch.add(frame)
            full = len(batch.events) >= MAX_BATCH and not backing_off
            if not (batch.write_now or full) and time.monotonic() < due:
                continue
        if batch.last_seq is None:
            due = time.monotonic() + interval
        elif _try_store(database, batch):
            _answer(out, batch.last_seq)
            batch = Batch()
            due = time.monotonic() + interval
            backing_off = False
        else:  # refused: kept, and tried again no sooner than in a second
            batch.write_now, backing_off = False, True
            due = time.monotonic() + max(interval, RETRY_SECONDS)
    for _ in range(END_TRIES):
        if batch.last_seq is None:
            return
        if _try_store(database, batch):
            _answer(out, batch.last_seq)
            return
        time.sleep(RETRY_SECONDS)
    log.error("audit_events_lost", extra={"audit_events": len(batch.events)})


def main() -> None:
    # Ctrl-C in a terminal, or a service manager stopping the whole group, signals this process
    # too: it goes on until the server closes its input, so that nothing it holds is lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from fhir_gateway.observability.logs import configure_logging
    from fhir_gateway.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    interval = float(os.environ.get("FHIR_GATEWAY_AUDIT_FLUSH_SECONDS", settings.audit_flush_seconds))
    database = Database(settings.database_url, pool_size=1)
    if settings.tune_gc:  # its own process: nothing to restore when it ends
        settle_after_startup()
    try:
        serve(database, sys.stdin.buffer, sys.stdout.buffer, interval)
    finally:
        database.dispose()


if __name__ == "__main__":
    main()
