#!/usr/bin/env python3
"""The gateway's own CPU per request, one scenario at a time, without HTTP or a load generator.

wrk's throughput on this shared 2-core machine drifts by up to 45 % between identical runs, so a
change's effect is decided here first, then confirmed by ``run_bench.py``'s paired rounds.

    python bench/inprocess.py prepare --state /tmp/inproc.json [--client partner]
    python bench/inprocess.py run --state /tmp/inproc.json --scenario read [--requests 3000]
        [--profile out.prof]
    python bench/inprocess.py drop --state /tmp/inproc.json

``prepare`` makes a PostgreSQL database as ``run_bench.py`` does (500 people × 20 Tasks by
../shared/bench/fhirload.py through a served gateway; with ``--client partner``, 1,000
Consents) and keeps it until ``drop``. ``run`` drives ``create_app()``'s ASGI callable in this
process on uvloop, fhirload's requests in turn, and prints the CPU per request of this process
and of its audit writer process (``cpu_us_per_request`` is their sum; with
``FHIR_GATEWAY_AUDIT_MODE=batched`` the writer's flushes run on this process's loop) and
PostgreSQL's, with a calibration figure
of the machine's speed at that moment (a fixed pure-Python loop). Every run adds to the
database (AuditEvents, creates): compare two versions of the code by alternating their runs,
not by runs far apart. ``--profile`` writes a cProfile of the measured requests (cProfile
misreads time across greenlet switches: py-spy on the same command gives better proportions).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent / "shared" / "bench"))

import run_bench  # noqa: E402

Request = tuple[str, str, bytes | None]


def prepare(args: argparse.Namespace) -> None:
    os.environ["BENCH_KEEP_DATABASES"] = "1"
    os.environ.setdefault("FHIR_GATEWAY_TOKEN_LIFETIME_SECONDS", "3600")
    workdir = Path(tempfile.mkdtemp(prefix="fgw_inproc_"))
    bench_args = argparse.Namespace(
        engine="postgresql", workers=1, client=args.client, patients=args.patients, tasks=args.tasks
    )
    with run_bench.gateway(bench_args, workdir) as target:
        state = json.loads(target.state.read_text())
        keep = {k: v for k, v in target.server_env.items() if k.startswith("FHIR_GATEWAY_")}
    Path(args.state).write_text(json.dumps({"env": keep, "ids": state, "client": args.client}))
    print(f"prepared {keep['FHIR_GATEWAY_DATABASE_URL']} -> {args.state}")


def requests_of(ids: dict[str, list[str]], scenario: str, count: int) -> list[Request]:
    """fhirload's requests for ``scenario`` (its ``scenarios``), ``count`` of them."""
    import fhirload

    make = fhirload.scenarios(ids)[scenario]
    out: list[Request] = []
    for i in range(count):
        method, url, body = make(i)
        out.append(
            (method, "/fhir" + ("/" + url if url else ""), json.dumps(body).encode() if body else None)
        )
    return out


def calibration() -> float:
    """Seconds of CPU for a fixed pure-Python loop: the machine's speed right now."""
    started = time.process_time()
    total = 0
    for i in range(2_000_000):
        total += i % 7
    return time.process_time() - started


async def call(
    app: Any, method: str, target: str, body: bytes | None, headers: list[tuple[bytes, bytes]]
) -> int:
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Any) -> Callable[[], Any]:
    """Start ``app``'s lifespan; the returned coroutine function ends it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    await outbox.get()

    async def end() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return end


async def token(app: Any, client: str) -> str:
    """A token of ``client`` from the built-in authorization server, asked in process."""
    from httpx import ASGITransport, AsyncClient

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://127.0.0.1:8000") as http:
        response = await http.post(
            "/auth/token",
            auth=(client, "bench-secret"),
            data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


async def drive(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    from fhir_gateway.app import create_app
    from fhir_gateway.settings import get_settings

    get_settings.cache_clear()
    app = create_app()
    end = await lifespan(app)
    try:
        bearer = await token(app, "bench-partner" if saved["client"] == "partner" else "bench")
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {bearer}".encode()),
            (b"content-type", b"application/fhir+json"),
            (b"accept", b"application/fhir+json"),
        ]
        random.seed(7)
        warm = requests_of(saved["ids"], args.scenario, args.warmup)
        measured = requests_of(saved["ids"], args.scenario, args.requests)
        statuses: dict[int, int] = {}
        for method, target, body in warm:
            await call(app, method, target, body, headers)
        await asyncio.sleep(0.3)  # the warm-up's audit events written
        profiler = cProfile.Profile() if args.profile else None
        started_wall, started, started_pg, started_writer = (
            time.perf_counter(),
            time.process_time(),
            run_bench.postgres_cpu_seconds(),
            run_bench.process_tree_cpu_seconds(os.getpid())["audit_writer"],
        )
        if profiler:
            profiler.enable()
        for method, target, body in measured:
            status = await call(app, method, target, body, headers)
            statuses[status] = statuses.get(status, 0) + 1
        writer = app.state.audit_writer  # the requests' audit events are their cost too
        await (writer.drain() if hasattr(writer, "drain") else writer._flush_in_loop(drain=True))
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        spent, wall = time.process_time() - started, time.perf_counter() - started_wall
        spent_pg = run_bench.postgres_cpu_seconds() - started_pg
        spent_writer = run_bench.process_tree_cpu_seconds(os.getpid())["audit_writer"] - started_writer
    finally:
        await end()
    return {
        "scenario": args.scenario,
        "requests": args.requests,
        "statuses": statuses,
        "cpu_us_per_request": round(1e6 * (spent + spent_writer) / args.requests, 1),
        "serving_cpu_us_per_request": round(1e6 * spent / args.requests, 1),
        "audit_writer_cpu_us_per_request": round(1e6 * spent_writer / args.requests, 1),
        "wall_us_per_request": round(1e6 * wall / args.requests, 1),
        "postgres_cpu_us_per_request": round(1e6 * spent_pg / args.requests, 1),
    }


def run(args: argparse.Namespace) -> None:
    saved = json.loads(Path(args.state).read_text())
    os.environ.update(saved["env"])
    os.environ.setdefault("FHIR_GATEWAY_LOG_LEVEL", "WARNING")
    import uvloop

    before = calibration()
    figures = uvloop.run(drive(args, saved))
    figures["calibration_s"] = round((before + calibration()) / 2, 3)
    print(json.dumps(figures))


def drop(args: argparse.Namespace) -> None:
    saved = json.loads(Path(args.state).read_text())
    name = saved["env"]["FHIR_GATEWAY_DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(
        ["psql", f"{run_bench.PG_SERVER}/test", "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("prepare", help="make and seed a database, keep it")
    made.add_argument("--state", required=True)
    made.add_argument("--client", choices=["trusted", "partner"], default="trusted")
    made.add_argument("--patients", type=int, default=500)
    made.add_argument("--tasks", type=int, default=20)
    ran = commands.add_parser("run", help="one scenario in process")
    ran.add_argument("--state", required=True)
    ran.add_argument("--scenario", choices=["read", "search", "search_include", "create", "transaction"])
    ran.add_argument("--requests", type=int, default=3000)
    ran.add_argument("--warmup", type=int, default=500)
    ran.add_argument("--profile", help="write a cProfile of the measured requests here")
    dropped = commands.add_parser("drop", help="drop the prepared database")
    dropped.add_argument("--state", required=True)
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "drop": drop}[args.command](args)


if __name__ == "__main__":
    main()
