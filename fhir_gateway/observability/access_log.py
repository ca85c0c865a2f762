"""The access log's lines, handed to ``logging`` a batch at a time.

One line per request (``observability.middleware``) went through ``logging`` as the request
ended: a record, the handlers, the JSON formatter, a write. Interleaved with the requests'
own work that cost about 40 µs of a read's CPU in the serving process (``bench/inprocess.py
run --scenario read``, five pairs: 379–410 µs, median 398, then 344–383 µs, median 359, with
the same lines emitted in batches); emitted one after the other, the same records cost
about 7 µs each. So the lines are
gathered, then emitted in order, each with the time its request ended (``ts``): when 256 wait,
or ``FLUSH_SECONDS`` after the first of them on that event loop, or when the application
stops, and at the process's exit. A line reaches the log at most that late; nothing else
changes (same logger, handlers, fields). Errors are logged by their own loggers at once.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from typing import Any

FLUSH_SECONDS = 0.1
BATCH = 256

log = logging.getLogger("fhir_gateway.access")


class AccessLog:
    """The access lines waiting to be emitted (thread-safe: tests run apps on several loops)."""

    def __init__(self) -> None:
        self._pending: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._timed_on: asyncio.AbstractEventLoop | None = None  # the loop of the flush to come

    def add(self, fields: dict[str, Any]) -> None:
        """One request's line (its ``extra`` fields); emitted with the next batch."""
        if not log.isEnabledFor(logging.INFO):
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: at once
            loop = None
        with self._lock:
            self._pending.append((time.time(), fields))
            full = len(self._pending) >= BATCH
            timed = self._timed_on is loop
            self._timed_on = loop
        if full or loop is None:
            self.flush()
        elif not timed:  # the first line waiting, or the loop that was to flush has gone
            loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Emit every waiting line, in order, each dated when its request ended."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._timed_on = None
        for created, fields in pending:
            record = log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra=fields)
            record.created = created
            record.msecs = (created - int(created)) * 1000
            log.handle(record)


ACCESS_LOG = AccessLog()
atexit.register(ACCESS_LOG.flush)
