"""The lifecycle the background workers share: rounds until stopped (subscriptions, exports).

A worker runs its ``run_once`` rounds in a daemon thread (``start`` / ``stop``), inside
``fhir-gateway serve`` or in ``fhir-gateway worker`` (``kit.worker_signals``). A round that
fails (the database may be restarting) is logged (``<thread name>_round_failed``, by the
worker module's logger) and the loop goes on after the idle wait.
"""

from __future__ import annotations

import logging
import threading


class WorkerLoop:
    """Rounds of ``run_once`` until ``stop``; waits ``poll_seconds`` after a round with nothing done."""

    def __init__(self, thread_name: str, *, poll_seconds: float, join_seconds: float) -> None:
        self.thread_name = thread_name
        self.poll_seconds = poll_seconds
        self.join_seconds = join_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = logging.getLogger(type(self).__module__)  # the worker's own logger
        self._round_failed = f"{thread_name.replace('-', '_')}_round_failed"

    def run_once(self) -> int:
        """One round; the work done (0: nothing to do, wait before the next round)."""
        raise NotImplementedError

    def run_forever(self) -> None:
        """Rounds until ``stop`` (or ``request_stop``)."""
        while not self._stop.is_set():
            try:
                busy = self.run_once() > 0
            except Exception:  # the database may be restarting: wait and try again
                self._log.exception(self._round_failed)
                busy = False
            if not busy:
                self._stop.wait(self.poll_seconds)

    def start(self) -> None:
        """Run in a background thread (the worker inside ``fhir-gateway serve``)."""
        self._thread = threading.Thread(target=self.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask ``run_forever`` to return after the current round (never from a signal handler:
        ``kit.worker_signals``)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the background thread (if any), waiting ``join_seconds`` at most, then ``close``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
        self.close()

    def close(self) -> None:
        """Release what the worker holds once stopped (nothing by default)."""
