#!/usr/bin/env python3
"""Import benchmark of the mapping engine (issue 5): generated saad-interventions files.

1. create a fresh SQLite file or PostgreSQL database and migrate it;
2. create the service's Organization and import N beneficiaries (saad-beneficiaires);
3. generate a file of ``--rows`` visits (written streamed, never held in memory) and run
   ``fhir-gateway import saad-interventions`` in a child process;
4. print rows/s and the child's peak RSS (memory must stay flat as files grow);
5. with ``--reimport``, import the same file again (nothing changes: no new version) and
   print that rate too.

    python bench/mapping_import.py [--engine sqlite|postgresql] [--rows 100000] [--beneficiaries 1000]
                                   [--reimport] [--profile FILE.txt]

On PostgreSQL the CPU time of the server's backends serving the import is printed too
(read from /proc while the import runs: the server must run on this machine). ``--profile``
records the import with py-spy (collapsed stacks, ``--native``) instead of timing it alone.

Figures, never pass/fail. Goal of issue 5: >= 5,000 rows/s; peak RSS flat from 100k to 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
ORG = "Organization/bench-saad"
BENEFICIARIES = (
    "Code bénéficiaire;Civilité;Nom;Nom de naissance;Prénom;Date de naissance;N° Sécurité sociale;Adresse;"
    "Code postal;Ville;Téléphone;GIR;Financeur;N° dossier financeur;Date début prise en charge;"
    "Date fin prise en charge;Statut"
)
VISITS = (
    "N° intervention;Code bénéficiaire;Date;Heure début prévue;Heure fin prévue;Heure début réelle;"
    "Heure fin réelle;Matricule intervenant;Type prestation;Statut;Motif annulation;Appréciation santé;"
    "Appréciation moral;Appréciation forme;Observation"
)
SERVICES = ["Aide au lever", "Toilette", "Préparation repas", "Aide au repas", "Courses", "Aide au coucher"]


def write_files(folder: Path, rows: int, people: int) -> tuple[Path, Path]:
    rng = random.Random(42)
    beneficiaries = folder / "beneficiaires.csv"
    with beneficiaries.open("w", encoding="cp1252", newline="") as out:
        out.write(BENEFICIARIES + "\r\n")
        for n in range(people):
            out.write(f"B{n:06d};Mme;NOM{n};;Prénom;01/01/1940;;;;;;;;;01/01/2024;;Actif\r\n")
    visits = folder / "interventions.csv"
    with visits.open("w", encoding="cp1252", newline="") as out:
        out.write(VISITS + "\r\n")
        for n in range(rows):
            day = f"{1 + n % 28:02d}/{1 + n // 28 % 12:02d}/2025"
            ratings = ";".join(str(rng.randint(2, 5)) for _ in range(3))
            service = SERVICES[n % len(SERVICES)]
            out.write(
                f"INT-{n:08d};B{n % people:06d};{day};08:00;09:00;08:05;09:02;AV-{n % 50:03d};{service};"
                f'Réalisée;;{ratings};"Observation ; visite {n}"\r\n'
            )
    return beneficiaries, visits


def database_url(engine: str, folder: Path) -> tuple[str, str | None]:
    if engine == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}", None
    name = f"fgw_mapbench_{uuid.uuid4().hex[:8]}"
    with create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return f"{PG_SERVER}/{name}", name


def create_organization(database: object, url: str) -> None:
    """The Organization the files speak for, through the service layer."""
    from fhir_gateway.fhir import writes
    from fhir_gateway.fhir.context import unit_of_work
    from fhir_gateway.mapping.commands import _access
    from fhir_gateway.settings import Settings

    body = {"resourceType": "Organization", "id": "bench-saad", "name": "Bench SAAD"}
    access = _access("bench:setup", ORG)
    with unit_of_work(
        database, Settings(database_url=url), access, write=True, audit_sink=lambda _e: None
    ) as ctx:  # type: ignore[arg-type]
        writes.update(ctx, "Organization", "bench-saad", body, None)


def run(
    args: list[str], env: dict[str, str], pg_name: str | None = None, profile: str | None = None
) -> float:
    """Run ``fhir-gateway ARGS``; its wall-clock seconds. With ``pg_name``, the CPU seconds of
    the server backends connected to that database are added to ``SERVER_CPU``."""
    command = [str(BIN / "fhir-gateway"), *args]
    if profile:
        command = [
            str(BIN / "py-spy"),
            "record",
            "--native",
            "--format",
            "raw",
            "-o",
            profile,
            "--",
            *command,
        ]
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    backends: dict[int, float] = {}
    watcher = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT") if pg_name else None
    while child.poll() is None:
        if watcher is not None and pg_name:
            _sample_backends(watcher, pg_name, backends)
        time.sleep(0.2)
    if watcher is not None:
        watcher.dispose()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    SERVER_CPU.append(sum(backends.values()))
    return time.perf_counter() - start


SERVER_CPU: list[float] = []
_TICK = os.sysconf("SC_CLK_TCK")


def _sample_backends(watcher: Any, pg_name: str, backends: dict[int, float]) -> None:
    """CPU seconds so far of each server process connected to ``pg_name`` (from /proc)."""
    with watcher.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
            {"d": pg_name},
        ).scalars()
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            backends[pid] = (int(fields[11]) + int(fields[12])) / _TICK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--beneficiaries", type=int, default=1000)
    parser.add_argument("--reimport", action="store_true", help="time a second import of the same file")
    parser.add_argument("--profile", metavar="FILE", help="record the import with py-spy into FILE")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url, pg_name = database_url(options.engine, folder)
        env = {**os.environ, "FHIR_GATEWAY_DATABASE_URL": url}
        try:
            run(["migrate"], env)
            sys.path.insert(0, str(ROOT))
            from fhir_gateway.storage.database import Database

            database = Database(url)
            create_organization(database, url)
            database.dispose()
            beneficiaries, visits = write_files(folder, options.rows, options.beneficiaries)
            run(["import", "saad-beneficiaires", str(beneficiaries), "--organization", ORG], env)
            cpu_before = _children_cpu()
            SERVER_CPU.clear()
            seconds = run(
                ["import", "saad-interventions", str(visits), "--organization", ORG],
                env,
                pg_name,
                options.profile,
            )
            server_cpu = SERVER_CPU[-1]
            cpu = _children_cpu() - cpu_before
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            again = (
                run(["import", "saad-interventions", str(visits), "--organization", ORG], env)
                if options.reimport
                else 0
            )
        finally:
            if pg_name:
                with create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT").connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    result = {
        "engine": options.engine,
        "rows": options.rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(options.rows / seconds),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        # the import process's own CPU (with SQLite, the database work too): the machine is shared
        "cpu_seconds": round(cpu, 2),
        "rows_per_cpu_second": round(options.rows / cpu) if cpu else None,
    }
    if pg_name:
        result["server_cpu_seconds"] = round(server_cpu, 2)
    if again:
        result["reimport_seconds"] = round(again, 2)
        result["reimport_rows_per_second"] = round(options.rows / again)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
