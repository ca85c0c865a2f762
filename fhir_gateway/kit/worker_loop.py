"""The lifecycle the background workers share: rounds until stopped (subscriptions, exports).

A worker runs its ``run_once`` rounds in a daemon thread (``start`` / ``stop``), inside
``fhir-gateway serve`` or in ``fhir-gateway worker`` (``run_until_signalled``). A round that
fails (the database may be restarting) is logged (``<thread name>_round_failed``, by the
worker module's logger) and the loop goes on after the idle wait.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})  # Ctrl-C, a service manager's stop


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
        ``run_until_signalled``)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the background thread (if any), waiting ``join_seconds`` at most, then ``close``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
        self.close()

    def close(self) -> None:
        """Release what the worker holds once stopped (nothing by default)."""


def block_stop_signals() -> None:
    """Hold SIGINT and SIGTERM pending in this thread and every thread it starts from now on.

    Call it first thing, before any thread exists, then ``run_until_signalled``: a signal then
    reaches the process only through ``signal.sigwait``, never through a Python handler.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def run_until_signalled(loops: Sequence[WorkerLoop]) -> int:
    """Run ``loops`` in their threads until SIGINT or SIGTERM, then stop them; the signal.

    The signal is taken by ``signal.sigwait`` in this thread rather than by a handler: Python
    runs a handler in the main thread between two bytecodes, and one that sets a
    ``threading.Event`` needs the lock of that Event's condition. Should the main thread hold
    it at that moment (inside its own ``Event.wait``), the process would wait for itself
    forever and a service manager's stop would hang (the ``signal`` module's documentation
    warns against locks in handlers). ``block_stop_signals`` must have run before any thread
    started.
    """
    for loop in loops:
        loop.start()
    received = signal.sigwait(STOP_SIGNALS)
    for loop in loops:
        loop.request_stop()  # all at once: their current rounds end together
    for loop in loops:
        loop.stop()
    return int(received)
