"""The audit trail written by a process of its own, beside each serving process.

Turning a request's AuditEvent (FHIR R4 auditevent.html#6.4.4.1) into its rows and sending
them took about a fifth of the serving process's time on a read. Here the serving process only
numbers its events, gives them their ids and writes them, a few milliseconds' worth at a time,
as one JSON line to the standard input of ``python -m fhir_gateway.audit.sidecar``, which
stores them in batches (``audit.sidecar`` describes the lines). The writer process answers with
the number of the last line it committed; until then the lines are kept here, and sent again to
a new writer process if the first one stops (its already stored events are skipped, by id).

Lost when the serving process itself is killed: the events of its last ``SEND_DELAY`` seconds,
not yet sent (the writer process stores what it received when its input ends, then stops).
Waiting events beyond ``max_pending`` are dropped, with an ``audit_queue_overflow`` log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Sequence

import orjson

from fhir_gateway.audit.batch_store import with_ids
from fhir_gateway.audit.events import AuditItem

log = logging.getLogger(__name__)

SEND_DELAY = 0.005  # events of this many seconds go to the writer process in one line
STOP_SECONDS = 30.0  # longest wait for the writer process to store what is left at shutdown
RESPAWN_DELAY = 1.0  # before a stopped writer process is replaced
CLOSING_REPLACEMENTS = 3  # writer processes started at most while the server stops


class AuditProcessWriter:
    """Hands AuditEvents to a writer process (same interface as ``audit.writer.AuditWriter``)."""

    def __init__(
        self,
        database_url: str,
        *,
        interval: float = 0.05,
        max_pending: int = 100_000,
        log_level: str = "INFO",
    ) -> None:
        self.database_url = database_url
        self.interval = interval
        self.max_pending = max_pending
        self.log_level = log_level
        self._lock = threading.Lock()
        self._waiting: list[AuditItem] = []  # not yet sent (events, or records: ``audit.events``)
        self._unanswered: deque[tuple[int, int, bytes]] = deque()  # (seq, events, line) sent, not stored
        self._unanswered_events = 0
        self._seq = 0
        self._stored_seq = 0
        self._stored = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._send_scheduled = False
        self._process: asyncio.subprocess.Process | None = None
        self._answers: asyncio.Task[None] | None = None
        self._closing = False
        self._replaced_while_closing = 0

    # -- the serving process's side -------------------------------------------------------

    def submit(self, events: Sequence[AuditItem]) -> None:
        """Hand over a request's events (from the event loop's thread or any other)."""
        if not events:
            return
        with self._lock:
            self._waiting.extend(events)
            overflow = len(self._waiting) + self._unanswered_events - self.max_pending
            if overflow > 0:
                del self._waiting[: min(overflow, len(self._waiting))]
                log.error("audit_queue_overflow", extra={"audit_events": overflow})
            if self._send_scheduled or self._loop is None:
                return
            self._send_scheduled = True
        if threading.get_ident() == self._loop_thread:
            self._loop.call_later(SEND_DELAY, self._send)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has stopped: ``aclose`` sends them
                self._loop.call_soon_threadsafe(self._loop.call_later, SEND_DELAY, self._send)

    def pending(self) -> int:
        """Events not yet stored (waiting here or sent and not yet answered)."""
        return len(self._waiting) + self._unanswered_events

    async def start(self) -> None:
        """Start the writer process (from the serving process's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self._spawn()
        with self._lock:
            handed_before = bool(self._waiting) and not self._send_scheduled
            self._send_scheduled = self._send_scheduled or handed_before
        if handed_before:
            self._loop.call_later(SEND_DELAY, self._send)

    async def drain(self) -> None:
        """Wait until every event handed over so far is stored."""
        self._send()
        if self._process is not None:
            await self._wait_stored(self._ask_now())

    async def aclose(self) -> None:
        """Send what is left, let the writer process store it and stop."""
        self._closing = True
        self._send()
        while True:
            process, answers = self._process, self._answers
            if process is None or answers is None:
                return
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(asyncio.shield(answers), STOP_SECONDS)
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                log.error("audit_writer_process_stuck", extra={"audit_events": self._unanswered_events})
                process.kill()
                await process.wait()
                break
            if self._process is process:  # not replaced while stopping
                break
        if self._unanswered_events:
            log.error("audit_events_lost", extra={"audit_events": self._unanswered_events})

    def close(self) -> None:
        """Kill the writer process if ``aclose`` could not stop it (its loop is gone)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    # -- lines to the writer process ------------------------------------------------------

    def _send(self) -> None:
        """Send the waiting events as one line (in the event loop's thread)."""
        with self._lock:
            self._send_scheduled = False
            events, self._waiting = self._waiting, []
        if not events:
            return
        self._seq += 1
        line = b"E%d %s\n" % (self._seq, orjson.dumps(with_ids(events)))
        with self._lock:
            self._unanswered.append((self._seq, len(events), line))
            self._unanswered_events += len(events)
        self._write(line)

    def _ask_now(self) -> int:
        """Ask the writer process to store what it has now; the number to wait for."""
        self._seq += 1
        self._write(b"F%d\n" % self._seq)
        return self._seq

    def _write(self, line: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return  # kept in ``_unanswered``: sent to the next writer process
        process.stdin.write(line)

    async def _wait_stored(self, seq: int) -> None:
        async with self._stored:
            await self._stored.wait_for(lambda: self._stored_seq >= seq)

    # -- the writer process ---------------------------------------------------------------

    async def _spawn(self) -> None:
        env = {
            **os.environ,
            "FHIR_GATEWAY_DATABASE_URL": self.database_url,
            "FHIR_GATEWAY_AUDIT_FLUSH_SECONDS": str(self.interval),
            "FHIR_GATEWAY_LOG_LEVEL": self.log_level,
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fhir_gateway.audit.sidecar",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        self._answers = asyncio.get_running_loop().create_task(self._read_answers(self._process))
        with self._lock:
            unanswered = list(self._unanswered)
        for _seq, _count, line in unanswered:  # a previous writer process stopped before storing them
            self._write(b"R" + line[1:])
        if self._seq > self._stored_seq:  # a ``drain`` may be waiting for a number never answered
            self._write(b"F%d\n" % self._seq)

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            try:
                self._stored_up_to(int(line))
            except ValueError:
                log.error("audit_writer_process_answer_refused")
                continue
            async with self._stored:
                self._stored.notify_all()
        await process.wait()
        if self._closing and (process.returncode == 0 or not self._unanswered_events):
            return
        log.error("audit_writer_process_stopped", extra={"exit_code": process.returncode})
        if self._closing:
            self._replaced_while_closing += 1
            if self._replaced_while_closing > CLOSING_REPLACEMENTS:
                return
        await asyncio.sleep(RESPAWN_DELAY)
        await self._spawn()
        if self._closing and self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()  # store what is left and stop: ``aclose`` waits for it

    def _stored_up_to(self, seq: int) -> None:
        with self._lock:
            while self._unanswered and self._unanswered[0][0] <= seq:
                self._unanswered_events -= self._unanswered.popleft()[1]
        self._stored_seq = max(self._stored_seq, seq)
