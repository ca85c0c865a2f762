"""The audit writer process: stores the AuditEvents a serving process sends it.

Run by ``audit.process_writer`` as ``python -m fhir_gateway.audit.sidecar`` (one per serving
process), so that turning events into rows and sending them (FHIR R4 auditevent.html#6.4.4.1,
stored as in ``audit.store``) takes none of the serving process's interpreter time.

Protocol: lines on standard input, answers on standard output.

- ``E<seq> <events>``: a JSON array of AuditEvents (each with its id) or of the accesses' records
  (``audit.events.audit_record``, made into their events here), the frame numbered ``seq``;
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
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from fhir_gateway.audit.batch_store import Batch, try_store
from fhir_gateway.audit.events import AuditItem, is_record
from fhir_gateway.kit.gc_tuning import settle_after_startup
from fhir_gateway.storage.database import Database

log = logging.getLogger(__name__)

MAX_BATCH = 500
RETRY_SECONDS = 1.0  # between two tries of a refused write at the end of the input
END_TRIES = 30  # how long (in tries) the last events are tried once the input has ended


@dataclass
class Frame:
    """One line of the serving process."""

    kind: str  # "E", "R" or "F"
    seq: int
    events: list[AuditItem] = field(default_factory=list)


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
        (isinstance(event, dict) and isinstance(event.get("id"), str)) or is_record(event) for event in events
    ):
        raise ValueError("a frame's events must be a JSON array of events, each with its id, or of records")
    return Frame(kind, int(seq), events)


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
            ended = frame is None
        except queue.Empty:  # nothing came: the batch is due
            frame = None
        if frame is not None:
            batch.add(frame.events, frame.seq, resent=frame.kind == "R", now=frame.kind == "F")
            full = len(batch.events) >= MAX_BATCH and not backing_off
            if not (batch.write_now or full) and time.monotonic() < due:
                continue
        if batch.last_seq is None:
            due = time.monotonic() + interval
        elif try_store(database, batch):
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
        if try_store(database, batch):
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
    database = Database(settings.database_url, pool_size=1)
    if settings.tune_gc:  # its own process: nothing to restore when it ends
        settle_after_startup()
    try:
        serve(database, sys.stdin.buffer, sys.stdout.buffer, settings.audit_flush_seconds)
    finally:
        database.dispose()


if __name__ == "__main__":
    main()
