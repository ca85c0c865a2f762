"""A live gateway: ``fhir-gateway serve`` in a subprocess on a free port, real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.databases import temporary_database_url

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[str] | None = field(default=None, compare=False)

    @property
    def fhir(self) -> str:
        return self.base_url + "/fhir"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real ``fhir-gateway`` command against the server's database."""
        return subprocess.run(
            [str(BIN / "fhir-gateway"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_gateway(tmp_dir: Path, **settings: str) -> Iterator[LiveServer]:
    """``fhir-gateway serve`` on a fresh database, with extra ``FHIR_GATEWAY_*`` settings."""
    with temporary_database_url(tmp_dir) as url, serving(url, tmp_dir, **settings) as server:
        yield server


@contextmanager
def serving(url: str, tmp_dir: Path, **settings: str) -> Iterator[LiveServer]:
    """``fhir-gateway serve`` on the database at ``url`` (its process in ``LiveServer.process``)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FHIR_GATEWAY_DATABASE_URL": url,
        "FHIR_GATEWAY_BASE_URL": base,
        "FHIR_GATEWAY_DEMO_CLIENT": "false",
        **{f"FHIR_GATEWAY_{k.upper()}": v for k, v in settings.items()},
    }
    log_path = tmp_dir / f"gateway-{port}.log"  # a file, not a pipe nobody drains (it would fill)
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [str(BIN / "fhir-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready")
        yield LiveServer(base, env, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_gateway(tmp_path_factory.mktemp("live")) as server:
        yield server
