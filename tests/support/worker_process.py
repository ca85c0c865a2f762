"""``fhir-gateway worker`` processes started by a test (fixture ``worker_processes``): each writes
to a file, a stop that fails shows that output (where a worker that hung wrote its threads'
stacks before exiting: ``kit.worker_signals``), and whatever still runs when the test ends,
passed or failed, is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
BANNER = "subscription worker "  # printed just before the loops' threads start
STOP_SECONDS = 90  # beyond a worker's own bound with the default settings (55 s)


class WorkerProcesses:
    """The workers one test started, with their output files in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.logs: dict[subprocess.Popen[str], Path] = {}  # each worker started: its output file

    def start(self, env: dict[str, str], *, wait: bool = False) -> subprocess.Popen[str]:
        """A worker writing to a file of its own (a pipe nobody drains would fill); ``wait``:
        once it has printed its banner."""
        log = self.log_dir / f"worker-{len(self.logs)}.log"
        with log.open("w") as output:
            process = subprocess.Popen([str(BIN / "fhir-gateway"), "worker"], env=env, stdout=output,
                                       stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.logs[process] = log
        deadline = time.monotonic() + 60
        while wait and BANNER not in self.output(process):
            assert process.poll() is None, self.output(process)
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        return process

    def output(self, process: subprocess.Popen[str]) -> str:
        return self.logs[process].read_text()

    def stop(self, process: subprocess.Popen[str], stop: int = signal.SIGTERM) -> int:
        """Send ``stop``; the exit status (1, after the stacks, from a worker whose stop hung).
        One that outlives its own bound is killed and fails the test with its output."""
        return self.stop_all([process], stop)[0]

    def stop_all(self, processes: list[subprocess.Popen[str]], stop: int = signal.SIGTERM) -> list[int]:
        """``stop`` sent to each of ``processes`` at once (their rounds end together), then
        their exit statuses, in order."""
        for process in processes:
            process.send_signal(stop)
        return [self._wait_stopped(process, signal.Signals(stop).name) for process in processes]

    def _wait_stopped(self, process: subprocess.Popen[str], name: str) -> int:
        try:
            return process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the worker did not stop at {name}:\n" + self.output(process)[-8000:])

    def kill_left(self) -> None:
        """Kill those still running (the test failed before stopping them)."""
        for process in self.logs:
            if process.poll() is None:
                process.kill()
                process.wait()
