#!/usr/bin/env python3
"""The whole benchmark in one go: the gateway and the floor, same engine, same run.

1. create a fresh PostgreSQL (default) or SQLite database for each server;
2. start ``fhir-gateway serve`` (uvicorn, ``--workers``), register a client, get a token, and
   start ../shared/bench/limit_server.py on the same engine; seed both with
   ../shared/bench/fhirload.py;
3. run each scenario on the gateway, then at once on the floor (wrk underneath), for
   ``--rounds`` rounds: both servers meet the same machine, whose speed drifts over minutes
   on shared hardware (by 45 % between two runs of the same code once);
4. write one JSON with both results (each scenario's median round, and every round) and the
   gateway/floor ratios: of throughput, and of the servers' CPU time per request
   (``<scenario>_cpu``: the floor's CPU per request divided by ours), each the median of the
   rounds' paired ratios. With ``--client partner`` (``make bench``) the scenarios run as a
   partner bound by 1,000 Consents, except ``transaction``, which registers new people: it runs
   as the trusted client (the JSON's ``clients`` says so). Each scenario also records the
   peak resident set of the largest process of each role (``peak_rss_mib``: serving worker,
   audit writer), and the JSON's ``gateway_peak_rss_mib`` is their largest over the run.

    python bench/run_bench.py [--engine postgresql|sqlite] [--patients 500] [--tasks 20]
                              [--seconds 10] [--rounds 1] [--workers 1] [--client trusted|partner]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
PARTNER = "Organization/bench-partner"
# fhirload's transaction Bundle registers a new person (Patient, CareTeam, CarePlan, Tasks): no
# Consent of that person exists yet, so a partner's is refused (403) by design, and its figure
# would time refusals. With ``--client partner`` that scenario runs with the trusted client.
PARTNER_TRANSACTIONS = (
    "trusted client: a partner's transaction registers a new person whom no Consent covers yet (403)"
)


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
    if not os.environ.get("BENCH_KEEP_DATABASES"):
        atexit.register(_drop_database, name)
    return f"postgresql+psycopg://{PG_SERVER.split('://', 1)[1]}/{name}", f"{PG_SERVER}/{name}"


def _drop_database(name: str) -> None:
    """Drop a benchmark's database when the script ends (a shared server's disk fills up with
    forgotten ones); ``BENCH_KEEP_DATABASES=1`` keeps them for inspection."""
    subprocess.run(
        ["psql", f"{PG_SERVER}/test", "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=False,
        capture_output=True,
    )


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
    """CPU time (user + system) of process ``pid`` and all its descendants (uvicorn workers,
    the gateway's audit writer processes).

    Throughput on a machine shared with other work is noisy; the server's CPU per request is
    not, and it is what bounds throughput on a dedicated core.
    """
    return sum(process_tree_cpu_seconds(pid).values())


def _tree_roles(pid: int) -> dict[str, tuple[str, list[str]]]:
    """The processes of ``pid``'s tree (``pid`` and its descendants): for each, its role
    (``serving``, or ``audit_writer`` for the gateway's audit writer processes) and its
    ``/proc/<pid>/stat`` fields after the command name."""
    parent_of: dict[str, str] = {}
    fields_of: dict[str, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[stat.parent.name] = fields[1]
        fields_of[stat.parent.name] = fields
    roles: dict[str, tuple[str, list[str]]] = {}
    for proc, fields in fields_of.items():
        ancestor = proc
        while ancestor not in (str(pid), "0", "1") and ancestor in parent_of:
            ancestor = parent_of[ancestor]
        if ancestor != str(pid):
            continue
        try:
            command = Path(f"/proc/{proc}/cmdline").read_bytes()
        except OSError:
            command = b""
        roles[proc] = ("audit_writer" if b"fhir_gateway.audit.sidecar" in command else "serving", fields)
    return roles


def process_tree_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time of ``pid`` and its descendants: the audit writer processes' apart."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"serving": 0.0, "audit_writer": 0.0}
    for role, fields in _tree_roles(pid).values():
        totals[role] += (int(fields[11]) + int(fields[12])) / tick
    return totals


def process_tree_peak_rss_mib(pid: int) -> dict[str, float]:
    """The largest peak resident set (``VmHWM``: since each process started) of one process of
    each role in ``pid``'s tree: issue 9's memory goal is per worker (< 300 MB during the run)."""
    peaks: dict[str, float] = {}
    for proc, (role, _) in _tree_roles(pid).items():
        try:
            status = Path(f"/proc/{proc}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[role] = max(peaks.get(role, 0.0), round(int(line.split()[1]) / 1024, 1))
    return peaks


def postgres_cpu_seconds() -> float:
    """CPU time used so far by this machine's PostgreSQL processes (server and backends): what
    a request costs the database, which shares the machine's cores with the server.

    A backend that has ended counts through its parent's ``cutime``/``cstime`` (the postmaster
    reaps its backends), so the figure does not drop when connections close."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if name.startswith("postgres"):
            total += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    return total


@dataclass
class Target:
    """A started and seeded server: where it answers, with what, and its process."""

    base: str
    token: str | None
    state: Path
    pid: int
    seed: dict[str, object]
    extra: dict[str, object] | None = None
    server_env: dict[str, str] = field(default_factory=dict)  # the gateway's environment
    rounds: list[dict[str, dict[str, object]]] = field(default_factory=list)
    # scenarios run with another token than ``token``, and why (``--client partner``)
    other_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)


def seeded(
    base: str,
    token: str | None,
    args: argparse.Namespace,
    workdir: Path,
    server_pid: int,
    run_token: str | None = None,
    between: Callable[[dict[str, list[str]]], dict[str, object]] | None = None,
) -> Target:
    """Seed with ``token``, call ``between(state)`` if given; the scenarios run with ``run_token``."""
    state = workdir / f"state-{uuid.uuid4().hex[:6]}.json"
    seed = fhirload(base, token, state, "seed", "--patients", str(args.patients), "--tasks", str(args.tasks))
    extra = between(json.loads(state.read_text())) if between is not None else None
    analyze(args.engine, base)
    return Target(base, run_token or token, state, server_pid, seed, extra)


def run_scenario(target: Target, scenario: str, args: argparse.Namespace) -> dict[str, object]:
    """One scenario for ``args.seconds`` on ``target``, with the server's and PostgreSQL's CPU
    per request."""
    cpu_before, database_before = process_tree_cpu_seconds(target.pid), postgres_cpu_seconds()
    figures = fhirload(
        target.base,
        target.other_tokens[scenario][0] if scenario in target.other_tokens else target.token,
        target.state,
        "run",
        "--seconds",
        str(args.seconds),
        "--concurrency",
        str(args.concurrency),
        "--only",
        scenario,
    )[scenario]
    assert isinstance(figures, dict)
    cpu_after = process_tree_cpu_seconds(target.pid)
    spent = {part: cpu_after[part] - cpu_before[part] for part in cpu_after}
    database = postgres_cpu_seconds() - database_before
    if figures.get("requests"):
        figures["server_cpu_ms_per_request"] = round(1000 * sum(spent.values()) / figures["requests"], 3)
        if spent["audit_writer"]:  # included in the server's figure above
            figures["audit_writer_cpu_ms_per_request"] = round(
                1000 * spent["audit_writer"] / figures["requests"], 3
            )
        if args.engine == "postgresql":
            figures["postgres_cpu_ms_per_request"] = round(1000 * database / figures["requests"], 3)
    figures["peak_rss_mib"] = process_tree_peak_rss_mib(target.pid)
    return figures


def consent_body(patient_id: str, actor: str, kind: str) -> dict[str, object]:
    """A FHIR R4 Consent of ``patient_id`` (patient-privacy) whose provision ``kind`` names ``actor``."""
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
                    "resource": consent_body(patient_id, actor, kind),
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


@contextmanager
def gateway(args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """The gateway started and seeded (a partner client's Consents added with ``--client partner``)."""
    env, base, port = prepared_gateway(args.engine, workdir)
    process = serve(env, port, args.workers)
    try:
        wait_ready(f"{base}/health/live", process)
        trusted = _token(base, "bench")
        if args.client == "partner":
            target = seeded(
                base + "/fhir",
                trusted,
                args,
                workdir,
                process.pid,
                run_token=_token(base, "bench-partner"),
                between=lambda state: add_consents(base + "/fhir", trusted, state),
            )
            target.other_tokens["transaction"] = (trusted, PARTNER_TRANSACTIONS)
        else:
            target = seeded(base + "/fhir", trusted, args, workdir, process.pid)
        target.server_env = env
        yield target
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def floor(args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """../shared/bench/limit_server.py started on the same engine, and seeded."""
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
        yield seeded(f"http://127.0.0.1:{port}/fhir", None, args, workdir, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def paired_ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """The gateway/floor ratios of one scenario run back to back on both: throughput (rps), and
    the floor's CPU per request divided by ours (cpu)."""
    out: dict[str, float] = {}
    if theirs.get("rps"):
        out["rps"] = float(ours["rps"]) / float(theirs["rps"])
    ours_cpu, floor_cpu = ours.get("server_cpu_ms_per_request"), theirs.get("server_cpu_ms_per_request")
    if ours_cpu and floor_cpu:
        out["cpu"] = float(floor_cpu) / float(ours_cpu)
    return out


def median_round(rounds: list[dict[str, dict[str, Any]]], scenario: str) -> dict[str, Any]:
    """``scenario``'s figures in the round whose throughput is the median."""
    ordered = sorted((r[scenario] for r in rounds), key=lambda figures: float(figures["rps"]))
    return ordered[(len(ordered) - 1) // 2]


def compare(ours: Target, theirs: Target, args: argparse.Namespace) -> dict[str, float | None]:
    """``--rounds`` rounds of every scenario, the gateway then the floor at once; the median of
    each scenario's paired ratios."""
    paired: dict[str, list[dict[str, float]]] = {scenario: [] for scenario in SCENARIOS}
    for _ in range(args.rounds):
        ours.rounds.append({})
        theirs.rounds.append({})
        for scenario in SCENARIOS:
            ours.rounds[-1][scenario] = run_scenario(ours, scenario, args)
            theirs.rounds[-1][scenario] = run_scenario(theirs, scenario, args)
            paired[scenario].append(paired_ratios(ours.rounds[-1][scenario], theirs.rounds[-1][scenario]))
    out: dict[str, float | None] = {}
    for scenario, ratios in paired.items():
        for kind, key in (("rps", scenario), ("cpu", f"{scenario}_cpu")):
            values = [r[kind] for r in ratios if kind in r]
            out[key] = round(statistics.median(values), 3) if values else None
    return out


def summary(target: Target) -> dict[str, object]:
    """A server's seed, each scenario's median round, and every round."""
    out: dict[str, object] = {
        "seed": target.seed,
        "run": {scenario: median_round(target.rounds, scenario) for scenario in SCENARIOS},
        "rounds": target.rounds,
    }
    if target.extra is not None:
        out["consents"] = target.extra
    if target.other_tokens:
        out["clients"] = {scenario: why for scenario, (_, why) in target.other_tokens.items()}
    return out


def _largest_peaks(rounds: list[dict[str, dict[str, object]]]) -> dict[str, float]:
    """The largest ``peak_rss_mib`` of each role over every scenario of ``rounds``."""
    largest: dict[str, float] = {}
    for figures in (f for r in rounds for f in r.values()):
        peaks = figures.get("peak_rss_mib")
        if isinstance(peaks, dict):
            for role, mib in peaks.items():
                largest[role] = max(largest.get(role, 0.0), float(mib))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every scenario on both servers")
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
        with gateway(args, workdir) as ours, floor(args, workdir) as theirs:
            ratios = compare(ours, theirs, args)
    result = {
        "settings": vars(args),
        "gateway": summary(ours),
        "floor": summary(theirs),
        "ratio_gateway_to_floor": ratios,
        "gateway_peak_rss_mib": _largest_peaks(ours.rounds),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
