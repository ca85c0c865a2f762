#!/usr/bin/env python3
"""The whole benchmark in one go: the gateway and the floor, same engine, same run.

1. create a fresh PostgreSQL (default) or SQLite database for each server;
2. start ``fhir-gateway serve`` (uvicorn, ``--workers``), register a client, get a token;
3. seed with ../shared/bench/fhirload.py and run its scenarios (wrk underneath);
4. start ../shared/bench/limit_server.py on the same engine, seed and run the same scenarios;
5. write one JSON with both results and the gateway/floor ratios: of throughput, and of the
   servers' CPU time per request (``<scenario>_cpu``: the floor's CPU per request divided by
   ours), which stays meaningful when other work shares the machine.

    python bench/run_bench.py [--engine postgresql|sqlite] [--patients 500] [--tasks 20]
                              [--seconds 10] [--workers 1] [--client trusted|partner]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
PARTNER = "Organization/bench-partner"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def new_database(engine: str, workdir: Path) -> tuple[str, str]:
    """(sqlalchemy url for the gateway, url for limit_server)."""
    if engine == "sqlite":
        path = workdir / f"{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}", f"sqlite:{path}"
    name = f"fgw_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", f"{PG_SERVER}/test", "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return f"postgresql+psycopg://{PG_SERVER.split('://', 1)[1]}/{name}", f"{PG_SERVER}/{name}"


def analyze(engine: str, base: str) -> None:
    """Refresh planner statistics after the bulk seed, as autovacuum would shortly after a load."""
    databases = ANALYZE_TARGETS.get(base, [])
    for target in databases:
        if engine == "postgresql":
            subprocess.run(["psql", target, "-qc", "ANALYZE"], check=True)
        else:
            import sqlite3

            with sqlite3.connect(target) as conn:
                conn.execute("ANALYZE")


ANALYZE_TARGETS: dict[str, list[str]] = {}


def fhirload(base: str, token: str | None, state: Path, *args: str) -> dict[str, object]:
    cmd = [str(BIN / "python"), str(SHARED_BENCH / "fhirload.py"), "--base", base, "--state", str(state)]
    if token:
        cmd += ["--token", token]
    out = subprocess.run(cmd + list(args), check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


SCENARIOS = ("read", "search", "search_include", "create", "transaction")


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its direct children (uvicorn workers).

    Throughput on a machine shared with other work is noisy; the server's CPU per request is
    not, and it is what bounds throughput on a dedicated core.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_scenarios(
    base: str,
    token: str | None,
    args: argparse.Namespace,
    workdir: Path,
    server_pid: int,
    run_token: str | None = None,
    between: object = None,
) -> dict[str, object]:
    """Seed with ``token``, call ``between(state)`` if given, run the scenarios with ``run_token``."""
    state = workdir / f"state-{uuid.uuid4().hex[:6]}.json"
    seed = fhirload(base, token, state, "seed", "--patients", str(args.patients), "--tasks", str(args.tasks))
    extra = between(json.loads(state.read_text())) if callable(between) else None
    analyze(args.engine, base)
    run: dict[str, object] = {}
    for scenario in SCENARIOS:
        cpu_before = server_cpu_seconds(server_pid)
        figures = fhirload(
            base,
            run_token or token,
            state,
            "run",
            "--seconds",
            str(args.seconds),
            "--concurrency",
            str(args.concurrency),
            "--only",
            scenario,
        )[scenario]
        assert isinstance(figures, dict)
        spent = server_cpu_seconds(server_pid) - cpu_before
        if figures.get("requests"):
            figures["server_cpu_ms_per_request"] = round(1000 * spent / figures["requests"], 3)
        run[scenario] = figures
    out: dict[str, object] = {"seed": seed, "run": run}
    if extra is not None:
        out["consents"] = extra
    return out


def _consent(patient_id: str, actor: str, kind: str) -> dict[str, object]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {
            "type": kind,
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": actor},
                }
            ],
        },
    }


def add_consents(base: str, token: str, state: dict[str, list[str]]) -> dict[str, object]:
    """Two Consents per person: a permit for the partner, a deny for another organisation."""
    entries = []
    for patient_id in state.get("Patient", []):
        for actor, kind in ((PARTNER, "permit"), ("Organization/bench-other", "deny")):
            entries.append(
                {
                    "resource": _consent(patient_id, actor, kind),
                    "request": {"method": "POST", "url": "Consent"},
                }
            )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    started = time.perf_counter()
    for i in range(0, len(entries), 100):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries[i : i + 100]}
        httpx.post(base, json=bundle, headers=headers, timeout=120).raise_for_status()
    return {"consents": len(entries), "seconds": round(time.perf_counter() - started, 2)}


def _token(base_url: str, client: str) -> str:
    response = httpx.post(
        f"{base_url}/auth/token",
        auth=(client, "bench-secret"),
        data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def prepared_gateway(engine: str, workdir: Path) -> tuple[dict[str, str], str, int]:
    """A new database, migrated, with the clients ``bench`` (trusted) and ``bench-partner``
    (of ``PARTNER``): the server's environment, its base URL and port (not started)."""
    url, plain_url = new_database(engine, workdir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ANALYZE_TARGETS[base + "/fhir"] = [plain_url.removeprefix("sqlite:")]
    env = {
        **os.environ,
        "FHIR_GATEWAY_DATABASE_URL": url,
        "FHIR_GATEWAY_BASE_URL": base,
        "FHIR_GATEWAY_DEMO_CLIENT": "false",
    }
    cli = str(BIN / "fhir-gateway")
    subprocess.run([cli, "migrate"], env=env, check=True, capture_output=True)
    for name, actor in (("bench", ["--trusted"]), ("bench-partner", ["--organization", PARTNER])):
        subprocess.run(
            [cli, "clients", "add", name, "--scope", "system/*.cruds", "--secret", "bench-secret", *actor],
            env=env,
            check=True,
            capture_output=True,
        )
    return env, base, port


def serve(env: dict[str, str], port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    """``fhir-gateway serve`` on ``port`` (its output discarded)."""
    return subprocess.Popen(
        [str(BIN / "fhir-gateway"), "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def gateway(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    env, base, port = prepared_gateway(args.engine, workdir)
    process = serve(env, port, args.workers)
    try:
        wait_ready(f"{base}/health/live", process)
        trusted = _token(base, "bench")
        if args.client == "partner":
            partner = _token(base, "bench-partner")
            return run_scenarios(
                base + "/fhir",
                trusted,
                args,
                workdir,
                process.pid,
                run_token=partner,
                between=lambda state: add_consents(base + "/fhir", trusted, state),
            )
        return run_scenarios(base + "/fhir", trusted, args, workdir, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def floor(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    _, limit_url = new_database(args.engine, workdir)
    port = free_port()
    ANALYZE_TARGETS[f"http://127.0.0.1:{port}/fhir"] = [limit_url.removeprefix("sqlite:")]
    env = {**os.environ, "LIMIT_DB": limit_url}
    process = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "limit_server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
        ],
        cwd=SHARED_BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/fhir/Task/none", process)
        return run_scenarios(f"http://127.0.0.1:{port}/fhir", None, args, workdir, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def ratios(ours: dict[str, object], theirs: dict[str, object]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    run_a, run_b = ours["run"], theirs["run"]
    assert isinstance(run_a, dict)
    assert isinstance(run_b, dict)
    for name, figures in run_a.items():
        other = run_b.get(name, {})
        out[name] = round(figures["rps"] / other["rps"], 3) if other.get("rps") else None
        ours_cpu, floor_cpu = figures.get("server_cpu_ms_per_request"), other.get("server_cpu_ms_per_request")
        if ours_cpu and floor_cpu:
            out[f"{name}_cpu"] = round(floor_cpu / ours_cpu, 3)  # the floor's CPU per request / ours
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--client", choices=["trusted", "partner"], default="trusted")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "bench.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print(
            "note: wrk not found (apt-get install wrk); fhirload falls back to its Python driver",
            file=sys.stderr,
        )
    os.environ.setdefault("FHIR_GATEWAY_TOKEN_LIFETIME_SECONDS", "3600")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours = gateway(args, workdir)
        theirs = floor(args, workdir)
    result = {
        "settings": vars(args),
        "gateway": ours,
        "floor": theirs,
        "ratio_gateway_to_floor": ratios(ours, theirs),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
