"""The audit trail writer: events of many requests written together, off the request path.

Requests hand their AuditEvents to ``submit`` and return; a background writer stores them
every ``interval`` seconds (or as soon as ``max_batch`` are waiting) in one transaction.
The writer is a thread, or, in a server on an asyncio database driver (PostgreSQL), a task
of the server's event loop (``start_in_loop``): a second Python thread in the serving
process would make both take turns on the interpreter lock, which cost about as much CPU
as the writing itself.
``mode="sync"`` writes before ``submit`` returns. A failed batch is kept and retried
(bounded by ``max_pending``); ``close`` flushes what is left when the process stops.
The price of batching: events of the last ``interval`` are lost if the process is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from fhir_gateway.audit.batch_store import Batch, try_store, with_ids
from fhir_gateway.audit.events import AuditItem, event_of
from fhir_gateway.audit.store import PreparedAudit, insert_audit_events, joined, prepare_audit_events
from fhir_gateway.kit.errors import FhirError, ServiceUnavailable
from fhir_gateway.storage.database import Database

log = logging.getLogger(__name__)


class AuditWriter:
    """Collects AuditEvents and writes them in batches (or at once in ``sync`` mode)."""

    def __init__(
        self,
        database: Database,
        *,
        mode: str = "batched",
        interval: float = 0.05,
        max_batch: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        self.database = database
        self.mode = mode
        self.interval = interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop_wake: asyncio.Event | None = None

    def submit(self, items: Sequence[AuditItem]) -> None:
        """Hand over a request's events (its accesses' records made into events here)."""
        if not items:
            return
        events = [event_of(item) for item in items]
        if self.mode == "sync":
            if not try_store(self.database, _batch(events)):
                self._queue(events)
            return
        self._queue(events)
        if self._task is not None:
            if len(self._pending) >= self.max_batch and self._loop_wake is not None:
                with contextlib.suppress(RuntimeError):  # from another thread: the timer will do
                    asyncio.get_running_loop()
                    self._loop_wake.set()
            return
        self._ensure_thread()
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    async def start(self) -> None:
        """Start writing from the running event loop when its driver allows (``start_in_loop``)."""
        self.start_in_loop()

    def start_in_loop(self) -> None:
        """Write from a task of the running event loop instead of a thread (asyncio driver only)."""
        if self.mode == "sync" or not self.database.is_async or self._task is not None:
            return
        self._loop_wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run_in_loop(), name="audit-writer")

    async def _run_in_loop(self) -> None:
        assert self._loop_wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._loop_wake.wait(), self.interval)
            self._loop_wake.clear()
            await self._flush_in_loop()

    async def _flush_in_loop(self, *, drain: bool = False) -> None:
        """Write what is pending, then, unless ``drain``, go on only while full batches wait:
        the events that arrive while a batch is written wait for the next tick and go
        together, rather than each few in a transaction of their own."""
        while True:
            batch = self._take()
            if not batch:
                return
            try:
                prepared = await prepared_in_steps(batch, refs_in_terms=self.database.dialect == "postgresql")
                await self.database.run(functools.partial(insert_audit_events, prepared=prepared), write=True)
            except ServiceUnavailable as exc:
                log.error("audit_write_failed: %s", exc, extra={"audit_events": len(batch)})
                self._keep(batch)
                return
            except (FhirError, DataError, IntegrityError):  # refused for its content: event by event
                if not await asyncio.to_thread(try_store, self.database, _batch(batch)):
                    self._keep(batch)
                    return
            except SQLAlchemyError:
                log.exception("audit_write_failed", extra={"audit_events": len(batch)})
                self._keep(batch)
                return
            if not drain and len(self._pending) < self.max_batch:
                return

    async def drain(self) -> None:
        """Write everything pending now, from the running loop (benchmarks measure with it)."""
        await self._flush_in_loop(drain=True)

    async def aclose(self) -> None:
        """Stop the loop task (if any) and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self._flush_in_loop(drain=True)
        self.close()

    def _queue(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(events)
            while len(self._pending) > self.max_pending:
                self._pending.popleft()
                log.error("audit_queue_overflow")

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write everything pending now (kept for a retry if the database refuses)."""
        while True:
            batch = self._take()
            if not batch:
                return
            if not try_store(self.database, _batch(batch)):
                self._keep(batch)
                return

    def _take(self) -> list[dict[str, Any]]:
        """The next batch (up to ``max_batch`` events), taken off the queue."""
        with self._lock:
            return [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]

    def _keep(self, batch: list[dict[str, Any]]) -> None:
        """Put ``batch`` back at the head of the queue, for the next try."""
        with self._lock:
            self._pending.extendleft(reversed(batch))

    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


def _batch(events: list[dict[str, Any]]) -> Batch:
    return Batch(with_ids(list(events)))


PREPARE_STEP = 25  # events turned into rows between two turns of the event loop


async def prepared_in_steps(events: list[dict[str, Any]], *, refs_in_terms: bool = False) -> PreparedAudit:
    """``prepare_audit_events`` of ``events`` (with ``refs_in_terms``), letting the event loop
    serve requests between steps: a batch of a few hundred events is tens of milliseconds of
    CPU, which in one go held every request waiting meanwhile (it was the p99 of reads)."""
    steps = []
    for start in range(0, len(events), PREPARE_STEP):
        if start:
            await asyncio.sleep(0)
        steps.append(prepare_audit_events(events[start : start + PREPARE_STEP], refs_in_terms=refs_in_terms))
    return joined(steps)
