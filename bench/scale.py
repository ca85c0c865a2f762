#!/usr/bin/env python3
"""Scale (issue 9): read and search latency at 10,000 and at 1,000,000 resources.

1. a fresh PostgreSQL database; people loaded in the shape of ../shared/bench/fhirload.py's seed
   (Organization, Patient, CareTeam, CarePlan and ``--tasks`` Tasks each), with two Consents each
   (a permit for the person's CareTeam, a deny for another organisation), by the bulk path:
   multi-row inserts of resources (their one version: no history row) and search index, CareTeam
   membership and consent grants compiled as on the API path; load rate reported;
2. at 10,000 resources: ANALYZE, start ``fhir-gateway serve``, run fhirload ``read`` and
   ``search`` (latency with 1 connection, throughput with 16) as a trusted client and as a
   partner under consent (``run_bench.PARTNER``, a member of every person's CareTeam, as a
   home-care service is of each person it visits: its reads are permitted by the grant to the
   person's team, asked among as many teams as there are people); stop;
3. load up to ``--total`` resources and measure again; print one JSON with both and ratios.

    python bench/scale.py [--total 1000000] [--tasks 20] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from run_bench import BIN, PARTNER, ROOT, consent_body, fhirload, free_port, new_database, wait_ready
from sqlalchemy import insert, text

from fhir_gateway.consent.careteam import compile_careteam
from fhir_gateway.consent.compile import compile_consent
from fhir_gateway.kit import jsonutil
from fhir_gateway.search.indexing import extract_index_rows, patient_compartment_id
from fhir_gateway.search.row_tokens import tokens_of
from fhir_gateway.storage.consent_tables import careteam_member, consent_grant
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.index_repository import IndexWrite, replace_indexes
from fhir_gateway.storage.migrate import upgrade
from fhir_gateway.storage.repository import NewVersion, insert_first_versions

STATUSES = ("requested", "accepted", "in-progress", "completed")
CLIENTS = {"trusted": ["--trusted"], "partner": ["--organization", PARTNER]}  # who reads, and as what
OTHER = "Organization/bench-other"


def person(n: int, tasks: int) -> list[dict[str, Any]]:
    """One person's coordination file, as fhirload's seed makes it (ids fixed here), and two
    Consents, as ``run_bench.add_consents`` gives each person: a permit, here for the person's
    CareTeam, and a deny for another organisation."""
    org, pat, team, plan = f"org{n}", f"pat{n}", f"team{n}", f"plan{n}"
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": org, "name": f"SAAD Bench {n}",
         "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": f"{690000000 + n}"}]},
        {"resourceType": "Patient", "id": pat, "name": [{"family": f"Bench{n}", "given": ["Alex"]}],
         "identifier": [{"system": "urn:bench:patient", "value": f"P{n:07d}"}],
         "birthDate": f"19{40 + n % 50:02d}-0{1 + n % 9}-1{n % 9}", "gender": ("female", "male")[n % 2]},
        {"resourceType": "CareTeam", "id": team, "status": "active",
         "subject": {"reference": f"Patient/{pat}"},
         "participant": [{"member": {"reference": f"Organization/{org}"}},
                         {"member": {"reference": PARTNER}}]},
        {"resourceType": "CarePlan", "id": plan, "status": "active", "intent": "plan",
         "subject": {"reference": f"Patient/{pat}"}, "careTeam": [{"reference": f"CareTeam/{team}"}]},
    ]  # fmt: skip
    for number, (actor, kind) in enumerate(((f"CareTeam/{team}", "permit"), (OTHER, "deny"))):
        resources.append({**consent_body(pat, actor, kind), "id": f"consent{n}-{number}"})
    for k in range(tasks):
        resources.append(
            {
                "resourceType": "Task",
                "id": f"task{n}-{k}",
                "status": STATUSES[(n + k) % 4],
                "intent": "order",
                "description": f"Intervention {k} for person {n}",
                "for": {"reference": f"Patient/{pat}"},
                "basedOn": [{"reference": f"CarePlan/{plan}"}],
                "owner": {"reference": f"Organization/{org}"},
                "authoredOn": "2026-01-15T09:00:00+01:00",
            }  # fmt: skip
        )
    return resources


def load(database: Database, first: int, last: int, tasks: int) -> float:
    """Bulk-load people ``first``..``last - 1``; resources per second."""
    started, count = time.perf_counter(), 0
    stamp = datetime.utcnow().replace(microsecond=0)
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        rows, indexes, members, grants = [], [], [], []
        for body in batch:
            body["meta"] = {"versionId": "1", "lastUpdated": stamp.isoformat() + "Z"}
            index = IndexWrite(body["resourceType"], body["id"], extract_index_rows(body), fresh=True)
            rows.append(NewVersion(body["resourceType"], body["id"], jsonutil.dumps_str(body),
                                   patient_compartment_id(body), stamp, tokens_of(index.rows)))  # fmt: skip
            indexes.append(index)
            if body["resourceType"] == "CareTeam":
                members += compile_careteam(body["id"], body)
            if body["resourceType"] == "Consent":
                grants += compile_consent(body["id"], body)
        with database.transaction(write=True) as conn:
            insert_first_versions(conn, rows)
            replace_indexes(conn, indexes)  # all fresh: inserts only
            if members:
                conn.execute(insert(careteam_member), members)
            if grants:
                conn.execute(insert(consent_grant), grants)
        batch.clear()

    for n in range(first, last):
        for body in person(n, tasks):
            batch.append(body)
            count += 1
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    return round(count / (time.perf_counter() - started), 1)


def measure(url: str, people: int, tasks: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """fhirload read and search against a gateway on this database (1 and 16 connections)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FHIR_GATEWAY_DATABASE_URL": url, "FHIR_GATEWAY_BASE_URL": base,
           "FHIR_GATEWAY_DEMO_CLIENT": "false"}  # fmt: skip
    cli = str(BIN / "fhir-gateway")
    names = {client: f"scale-{client}-{uuid.uuid4().hex[:6]}" for client in CLIENTS}
    for client, actor in CLIENTS.items():
        subprocess.run([cli, "clients", "add", names[client], "--scope", "system/*.cruds", "--secret",
                        "scale-secret", *actor], env=env, check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen([cli, "serve", "--port", str(port), "--no-migrate"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_ready(f"{base}/health/live", server)
        import httpx

        sample = range(0, people, max(1, people // 2000))
        state = workdir / f"state-{port}.json"
        state.write_text(json.dumps({
            "Patient": [f"pat{n}" for n in sample], "Organization": [f"org{n}" for n in sample],
            "Task": [f"task{n}-{k}" for n in sample for k in range(min(tasks, 3))],
        }))  # fmt: skip
        out: dict[str, Any] = {}
        for client in CLIENTS:
            token = httpx.post(f"{base}/auth/token", auth=(names[client], "scale-secret"),
                               data={"grant_type": "client_credentials"}).json()["access_token"]  # fmt: skip
            for connections in (1, 16):
                run = fhirload(base + "/fhir", token, state, "run", "--only", "read,search", "--seconds",
                               str(seconds), "--concurrency", str(connections))  # fmt: skip
                out.setdefault(client, {})[f"c{connections}"] = run
        return out
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fgw-scale-"))
    url, plain = new_database("postgresql", workdir)
    database = Database(url)
    upgrade(database)
    per_person = len(person(0, args.tasks))
    small, large = max(1, 10_000 // per_person), max(1, args.total // per_person)
    result: dict[str, Any] = {"resources_per_person": per_person}
    result["load_small_per_s"] = load(database, 0, small, args.tasks)
    subprocess.run(["psql", plain, "-qc", "ANALYZE"], check=True)
    result["at_10k"] = {
        "resources": small * per_person,
        **measure(url, small, args.tasks, args.seconds, workdir),
    }
    result["load_large_per_s"] = load(database, small, large, args.tasks)
    subprocess.run(["psql", plain, "-qc", "VACUUM ANALYZE"], check=True)
    with database.transaction() as conn:
        size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
    result["at_1m"] = {"resources": large * per_person, "database_size": size,
                       **measure(url, large, args.tasks, args.seconds, workdir)}  # fmt: skip
    ratios: dict[str, float] = {}
    for client in CLIENTS:
        for scenario in ("read", "search"):
            for key in ("p50_ms", "p99_ms"):
                a = result["at_10k"][client]["c1"][scenario][key]
                b = result["at_1m"][client]["c1"][scenario][key]
                ratios[f"{client}_{scenario}_{key}_1m_over_10k"] = round(b / a, 2) if a else float("nan")
    result["latency_ratios"] = ratios
    database.dispose()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
