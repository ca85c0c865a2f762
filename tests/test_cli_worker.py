"""``fhir-gateway worker`` stops when told, every time (through the real command, on the test
engine): SIGTERM from a service manager or SIGINT from a terminal ends it with status 0 once
its current rounds end, SIGUSR1 writes every thread's stack without stopping it, and a stop
that hangs ends the process within its bound, with the stacks (``kit.worker_signals``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import temporary_database_url
from tests.support.worker_process import BIN, WorkerProcesses


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a worker on a fresh, migrated database that looks for work as often
    as it can (its loops spend the least time waiting)."""
    tmp_dir = tmp_path_factory.mktemp("worker")
    with temporary_database_url(tmp_dir) as url:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_GATEWAY_")}
        env = {**clean, "FHIR_GATEWAY_DATABASE_URL": url, "FHIR_GATEWAY_SUBSCRIPTION_POLL_SECONDS": "0.001",
               "FHIR_GATEWAY_EXPORT_DIR": str(tmp_dir / "exports")}  # fmt: skip
        migrated = subprocess.run([str(BIN / "fhir-gateway"), "migrate"], env=env, capture_output=True,
                                  text=True, timeout=120, check=False)  # fmt: skip
        assert migrated.returncode == 0, migrated.stderr
        yield env


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_stops_cleanly_at_each_signal(
    worker_env: dict[str, str], worker_processes: WorkerProcesses, stop: signal.Signals
) -> None:
    """Starts each stopped at a random moment of their rounds: none hangs."""
    for _ in range(4):
        process = worker_processes.start(worker_env, wait=True)
        time.sleep(random.uniform(0, 0.3))
        assert worker_processes.stop(process, stop) == 0, worker_processes.output(process)
        assert f"stopped ({stop.name})" in worker_processes.output(process)


def test_sigusr1_writes_every_threads_stack_and_the_worker_goes_on(
    worker_env: dict[str, str], worker_processes: WorkerProcesses
) -> None:
    process = worker_processes.start(worker_env, wait=True)
    for _ in range(20):  # many times, while its loops are busy (it polls every millisecond)
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while worker_processes.output(process).count("Stacks of every thread") < 20:
        assert time.monotonic() < deadline, worker_processes.output(process)
        time.sleep(0.05)
    stacks = worker_processes.output(process)
    for thread in ("subscription-worker", "export-worker", "MainThread"):
        assert f'Thread "{thread}"' in stacks, stacks
    assert "run_forever" in stacks  # the loops' threads
    assert "run_until_signalled" in stacks  # the main thread, waiting for the next signal
    assert process.poll() is None
    assert worker_processes.stop(process) == 0, worker_processes.output(process)


@pytest.mark.real_clock  # faulthandler's watchdog thread waits on a timed lock, which libfaketime stalls
def test_a_worker_whose_stop_hangs_writes_its_stacks_and_exits_within_its_bound(tmp_path: Path) -> None:
    """A loop whose ``close`` never returns: the stop gives up after the loops' ``join_seconds``
    plus the margin, writes where each thread was, and exits with status 1."""
    script = tmp_path / "hanging_worker.py"
    script.write_text(HANGING_WORKER)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "running\n"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1, output
    assert 1.0 <= time.monotonic() - started < 20  # 0.5 s of join and 0.5 s of margin, then out
    assert "in close" in output, output  # the hung call is named
    assert "stopped" not in output


HANGING_WORKER = """
import threading
from fhir_gateway.kit.worker_loop import WorkerLoop
from fhir_gateway.kit.worker_signals import block_worker_signals, run_until_signalled

class Hanging(WorkerLoop):
    def run_once(self):
        return 0

    def close(self):
        threading.Event().wait()  # never set

block_worker_signals()
loop = Hanging("hanging", poll_seconds=0.01, join_seconds=0.5)
print("running", flush=True)  # a SIGTERM from now on waits, blocked, for sigwait
run_until_signalled([loop], lambda: None, margin_seconds=0.5)
print("stopped", flush=True)
"""
