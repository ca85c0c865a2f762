"""``fhir-gateway worker`` stops when told, every time (through the real command, on the test
engine): SIGTERM from a service manager or SIGINT from a terminal ends it with status 0 once
its current rounds end, and SIGUSR1 writes every thread's stack without stopping it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import temporary_database_url
from tests.support.worker_process import BIN, start_worker, stop_worker


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
    worker_env: dict[str, str], tmp_path: Path, stop: signal.Signals
) -> None:
    """Starts each stopped at a random moment of their rounds: none hangs."""
    for attempt in range(4):
        log = tmp_path / f"worker-{attempt}.log"
        process = start_worker(worker_env, log, wait=True)
        time.sleep(random.uniform(0, 0.3))
        assert stop_worker(process, log, stop) == 0, log.read_text()
        assert f"stopped ({stop.name})" in log.read_text()


def test_sigusr1_writes_every_threads_stack_and_the_worker_goes_on(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The banner comes just before the loops' threads start: a dump sent at once may show only
    the main thread, so SIGUSR1 goes again, every half second, until a dump shows them all."""
    log = tmp_path / "worker.log"
    process = start_worker(worker_env, log, wait=True)
    functions = ("run_forever", "run_until_signalled")  # the loops' threads, the main thread's wait
    deadline = time.monotonic() + 15
    while not all(name in log.read_text() for name in functions) and time.monotonic() < deadline:
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
    stacks = log.read_text()
    for name in functions:
        assert name in stacks, stacks
    assert process.poll() is None
    assert stop_worker(process, log) == 0, log.read_text()
