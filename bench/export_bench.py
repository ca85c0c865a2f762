#!/usr/bin/env python3
"""Bulk ``$export`` (issue 8): resources exported per second and peak memory, at 100,000 resources.

1. a fresh database (SQLite file or PostgreSQL), people bulk-loaded as in ``scale.py``
   (Organization, Patient, CareTeam, CarePlan and ``--tasks`` Tasks each) up to ``--resources``;
   every second person's CareTeam also has ``Organization/bench-partner`` as a member, so that the
   partner client is let in by the care-team default policy, decided in SQL per row;
2. the gateway application in this process: kick-off over HTTP (``Prefer: respond-async``) with a
   trusted client or the partner (``--client``), then the export worker's job (the code that runs
   inside ``fhir-gateway serve``), timed; peak RSS of the export (VmHWM reset just before it);
3. every file downloaded over HTTP with the client's token; lines counted.

    python bench/export_bench.py [--engine sqlite|postgresql] [--resources 100000] [--client trusted]

Prints one JSON. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import scale
from run_bench import PARTNER, PG_SERVER, new_database
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.auth.registry import register
from fhir_gateway.exports.worker import ExportWorker
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade

_person = scale.person


def person_with_partner(n: int, tasks: int) -> list[dict[str, Any]]:
    """scale.person, and the partner in every second person's circle of care."""
    resources = _person(n, tasks)
    if n % 2 == 0:
        team = next(r for r in resources if r["resourceType"] == "CareTeam")
        team["participant"].append({"member": {"reference": PARTNER}})
    return resources


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0, /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--client", choices=["trusted", "partner"], default="trusted")
    args = parser.parse_args()
    per_person = 4 + args.tasks
    people = -(-args.resources // per_person)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url, _plain = new_database(args.engine, workdir)
        database = Database(url)
        try:
            upgrade(database)
            scale.person = person_with_partner
            load_rate = scale.load(database, 0, people, args.tasks)
            if args.engine == "postgresql":
                with database.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
            result = run(args, database, url, workdir, people * per_person, load_rate)
        finally:
            database.dispose()
            if args.engine == "postgresql":
                name = url.rsplit("/", 1)[1]
                subprocess.run(["psql", f"{PG_SERVER}/test", "-qc", f'DROP DATABASE "{name}" WITH (FORCE)'])
    print(json.dumps(result, indent=2))


def run(
    args: argparse.Namespace, database: Database, url: str, workdir: Path, loaded: int, load_rate: float
) -> dict[str, Any]:
    settings = Settings(
        database_url=url,
        base_url="http://testserver",
        audit_mode="sync",
        subscription_worker_in_serve=False,
        export_worker_in_serve=False,
        export_dir=str(workdir / "exports"),
        demo_client=False,
    )
    app = create_app(settings, database)
    trusted = args.client == "trusted"
    register(
        database,
        "bench-export",
        "system/*.rs",
        secret="bench-secret",
        organization=None if trusted else PARTNER,
        trusted=trusted,
    )
    with TestClient(app) as http:
        token = http.post(
            "/auth/token", data={"grant_type": "client_credentials"}, auth=("bench-export", "bench-secret")
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        kick = http.get(
            "/fhir/$export",
            params={"_type": "Organization,Patient,CareTeam,CarePlan,Task"},
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"].replace("http://testserver", "")
        worker = ExportWorker(database, settings, audit_sink=app.state.audit_writer.submit)
        rss_before = memory_kib("VmRSS")
        reset_peak()
        started = time.perf_counter()
        assert worker.run_once() == 1
        seconds = time.perf_counter() - started
        export_peak = memory_kib("VmHWM")
        found = http.get(status_url).json()
        exported = sum(int(o["count"]) for o in found["output"])
        reset_peak()
        started = time.perf_counter()
        lines = 0
        size = 0
        for item in found["output"]:
            response = http.get(item["url"].replace("http://testserver", ""))
            lines += response.text.count("\n")
            size += len(response.content)
        download = time.perf_counter() - started
        download_peak = memory_kib("VmHWM")
    return {
        "engine": args.engine,
        "client": args.client,
        "resources_loaded": loaded,
        "load_resources_per_s": load_rate,
        "exported": exported,
        "files": len(found["output"]),
        "export_seconds": round(seconds, 2),
        "export_resources_per_s": round(exported / seconds, 1),
        "rss_before_export_mib": round(rss_before / 1024, 1),
        "peak_rss_during_export_mib": round(export_peak / 1024, 1),
        "export_rss_growth_mib": round((export_peak - rss_before) / 1024, 1),
        "downloaded_lines": lines,
        "downloaded_mib": round(size / 2**20, 1),
        "download_seconds": round(download, 2),
        "peak_rss_during_download_mib": round(download_peak / 1024, 1),
    }


if __name__ == "__main__":
    main()
