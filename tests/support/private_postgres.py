"""A private PostgreSQL cluster for fault tests that must not touch the shared test server.

``initdb`` and ``pg_ctl`` of the newest ``/usr/lib/postgresql/*/bin`` (or ``PG_BIN``), run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root), trust authentication on
127.0.0.1 and a free port. Where the machine cannot run one (no binaries, no ``postgres`` user,
``initdb`` or the start refused) the calling test is skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path | None:
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_server_user(command: Sequence[str]) -> list[str]:
    """``command`` as the ``postgres`` user when we are root, else as ourselves."""
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class Cluster:
    """A running (or stopped) private cluster."""

    bin: Path
    data: Path
    home: Path  # socket and log
    port: int
    options: str

    @property
    def server_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(
            _as_server_user(command), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> subprocess.CompletedProcess[str]:
        return self.ctl("-l", str(self.log), "-o", self.options, "-w", "-t", "60", "start")

    def running(self) -> bool:
        return self.ctl("status").returncode == 0

    def stop(self) -> None:
        self.ctl("-m", "immediate", "-w", "stop")


@contextmanager
def private_cluster(home: Path, data: Path, *initdb_args: str, settings: str = "") -> Iterator[Cluster]:
    """A cluster initialised in ``data`` (``initdb_args`` added), socket and log in ``home``,
    started with the extra server ``settings`` (``-c name=value ...``); stopped at the end."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): no private cluster")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run a private cluster as")
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
    made = subprocess.run(
        _as_server_user([*initdb, *initdb_args]), capture_output=True, text=True, timeout=120, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"initdb refused here: {made.stderr.strip()[-300:]}")
    port = _free_port()
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 {settings}".strip()
    cluster = Cluster(bin_dir, data, home, port, options)
    started = cluster.start()
    if started.returncode != 0:
        log = cluster.log.read_text() if cluster.log.exists() else ""
        pytest.skip(f"a private cluster cannot start here: {(started.stderr + log).strip()[-300:]}")
    try:
        yield cluster
    finally:
        cluster.stop()
