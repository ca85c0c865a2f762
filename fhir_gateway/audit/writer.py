"""The audit trail writer: events of many requests written together, off the request path.

Requests hand their AuditEvents to ``submit`` and return; a background thread writes them
every ``interval`` seconds (or as soon as ``max_batch`` are waiting) in one transaction.
``mode="sync"`` writes before ``submit`` returns. A failed batch is kept and retried
(bounded by ``max_pending``); ``close`` flushes what is left when the process stops.
The price of batching: events of the last ``interval`` are lost if the process is killed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from fhir_gateway.audit.store import try_write_audit_events
from fhir_gateway.storage.database import Database

log = logging.getLogger(__name__)


class AuditWriter:
    """Collects AuditEvents and writes them in batches (or at once in ``sync`` mode)."""

    def __init__(
        self,
        database: Database,
        *,
        mode: str = "batched",
        interval: float = 0.2,
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

    def submit(self, events: list[dict[str, Any]]) -> None:
        """Hand over a request's events."""
        if not events:
            return
        if self.mode == "sync":
            if not try_write_audit_events(self.database, events):
                self._queue(events)
            return
        self._queue(events)
        self._ensure_thread()
        if len(self._pending) >= self.max_batch:
            self._wake.set()

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
            with self._lock:
                batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            if not batch:
                return
            if not try_write_audit_events(self.database, batch):
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                return

    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
