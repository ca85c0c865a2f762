"""How ``fhir-gateway worker`` answers signals: SIGINT and SIGTERM stop it, SIGUSR1 writes
every thread's stack to stderr; no Python signal handler is involved.

The three signals are blocked in every thread (``block_worker_signals``, before any thread
starts) and the main thread takes them one at a time with ``signal.sigwait``
(``run_until_signalled``), as ordinary code. A Python handler would run in the main thread
between two bytecodes: one that set a ``threading.Event`` needs the lock of that Event's
condition, and should the main thread hold it at that moment (inside its own ``Event.wait``)
the process would wait for itself forever (the ``signal`` module's documentation warns
against locks in handlers). ``faulthandler.register`` is no answer for SIGUSR1 either: it
reads the other threads' frames from the handler while they run, and a worker sent SIGUSR1
every 50 ms while busy crashed (SIGSEGV) within 100 signals.

Once asked to stop, a worker that has not stopped within its loops' ``join_seconds`` plus
``STOP_MARGIN_SECONDS`` writes every thread's stack and exits with status 1
(``faulthandler.dump_traceback_later``): a stop is bounded, and one that hangs says where.
That dump reads the frames as ``faulthandler`` does, unsafe for a process that goes on but
acceptable for one about to exit.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from fhir_gateway.kit.worker_loop import WorkerLoop

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})  # Ctrl-C, a service manager's stop
STACKS_SIGNAL = signal.SIGUSR1
WORKER_SIGNALS = STOP_SIGNALS | {STACKS_SIGNAL}  # blocked everywhere, taken by the main thread
STOP_MARGIN_SECONDS = 10.0  # beyond the loops' joins: closing the pools and connections


def block_worker_signals() -> None:
    """Hold SIGINT, SIGTERM and SIGUSR1 pending in this thread and every thread it starts from
    now on: call it first thing, before any thread exists."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)


def run_until_signalled(
    loops: Sequence[WorkerLoop],
    release: Callable[[], None],
    margin_seconds: float = STOP_MARGIN_SECONDS,
) -> signal.Signals:
    """Run ``loops`` in their threads until SIGINT or SIGTERM (writing the stacks at each
    SIGUSR1), then stop them and call ``release``, within their ``join_seconds`` plus
    ``margin_seconds``; the signal that stopped them."""
    for loop in loops:
        loop.start()
    while (received := signal.sigwait(WORKER_SIGNALS)) == STACKS_SIGNAL:
        write_thread_stacks()
    faulthandler.dump_traceback_later(
        sum(loop.join_seconds for loop in loops) + margin_seconds, exit=True, file=sys.stderr
    )
    for loop in loops:
        loop.request_stop()  # all at once: their current rounds end together
    for loop in loops:
        loop.stop()
    release()
    faulthandler.cancel_dump_traceback_later()
    return signal.Signals(received)


def write_thread_stacks(fd: int = 2) -> None:
    """Every thread's stack, most recent call last, written to ``fd`` in one piece."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = ["Stacks of every thread:\n"]
    for ident, frame in sys._current_frames().items():
        parts.append(f'Thread "{names.get(ident, ident)}" (most recent call last):\n')
        parts.extend(traceback.format_stack(frame))
    data = "".join(parts).encode()
    while data:
        data = data[os.write(fd, data) :]
