"""``fhir-gateway worker`` as a child process of a test: its output in a file, and a stop that
fails the test with every thread's stack (SIGUSR1) rather than a bare timeout when it hangs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
BANNER = "subscription worker "  # printed once its loops are about to start


def start_worker(env: dict[str, str], log: Path, *, wait: bool = False) -> subprocess.Popen[str]:
    """A worker writing to ``log`` (a file: a pipe nobody drains would fill); ``wait``: once it
    has printed its banner."""
    with log.open("a") as output:
        process = subprocess.Popen([str(BIN / "fhir-gateway"), "worker"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while wait and BANNER not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    return process


def stop_worker(process: subprocess.Popen[str], log: Path, stop: int = signal.SIGTERM) -> int:
    """Send ``stop``; the exit status. A worker still running 20 s later fails the test with
    its threads' stacks."""
    process.send_signal(stop)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        process.wait()
        pytest.fail(f"the worker did not stop at {signal.Signals(stop).name}:\n" + log.read_text()[-8000:])
