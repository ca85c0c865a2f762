#!/usr/bin/env python3
"""What active Subscriptions cost a partner file import, per row, as the file grows (issue 7).

For each ``--rows`` size, twice on a fresh database (once without, once with ``--subscriptions``
active rest-hook Subscriptions on Task, owned by a partner of the service, whose care team
covers every person: they match): 1,000 beneficiaries, then one import of ``rows`` visits
(``saad-interventions``, 1.58 Tasks per row) in-process through the mapping engine, as
``fhir-gateway import`` does. Printed per size: the import's time, the SQL statements it ran
per row, and the difference the subscriptions make (milliseconds and statements per row,
notifications queued). Matching that costs the same per row whatever the size of the file
shows as a flat ``sub_ms_per_row`` and ``sub_statements_per_row``.

    python bench/subscription_matching.py [--engine sqlite|postgresql] [--rows 1500,6000]
                                          [--subscriptions 2]

Figures, never pass/fail (the machine is shared: statements are exact, times are not).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from mapping_import import ORG, PG_SERVER, create_organization, write_files
from sqlalchemy import create_engine, event, func, select, text

from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.mapping.commands import _access
from fhir_gateway.mapping.importer import ImportOptions
from fhir_gateway.mapping.service import find_format, import_file
from fhir_gateway.settings import Settings
from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.outbox_tables import subscription_event
from fhir_gateway.storage.schema import full_metadata
from fhir_gateway.storage.subscription_repository import SubscriptionOwner

CRITERIA = ["status=completed", "code=alerte-vigilance", "owner=Organization/bench-saad", "intent=order"]


def _import(database: Database, settings: Settings, name: str, path: Path) -> None:
    access = _access("bench:import", ORG)
    with unit_of_work(database, settings, access, write=True, audit_sink=lambda _e: None) as ctx:
        import_file(ctx, find_format(settings, name, "import"), path.open("rb"), ORG, ImportOptions())


def _subscribe(database: Database, count: int) -> None:
    owner = SubscriptionOwner("bench-partner", ORG, None, False, False, "system/*.rs", "COC")
    with database.transaction(write=True) as conn:
        for n in range(count):
            subscription_repository.save(
                conn,
                f"bench-{n}",
                res_type="Task",
                criteria=CRITERIA[n % len(CRITERIA)],
                endpoint="https://receiver.example/hook",
                headers=(),
                payload="application/fhir+json",
                status="active",
                owner=owner,
            )


def measure(engine: str, rows: int, subscriptions: int) -> dict[str, Any]:
    """One import of ``rows`` visits on a fresh database with ``subscriptions`` active."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pg_name = None
        if engine == "sqlite":
            url = f"sqlite:///{folder / 'bench.db'}"
        else:
            pg_name = f"fgw_submatch_{uuid.uuid4().hex[:8]}"
            with create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
            url = f"{PG_SERVER}/{pg_name}"
        database = Database(url)
        try:
            full_metadata().create_all(database.engine)
            settings = Settings(database_url=url)
            create_organization(database, url)
            beneficiaries, visits = write_files(folder, rows, 1000)
            _import(database, settings, "saad-beneficiaires", beneficiaries)
            _subscribe(database, subscriptions)
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            event.listen(database.engine, "before_cursor_execute", count)
            cpu, wall = time.process_time(), time.perf_counter()
            _import(database, settings, "saad-interventions", visits)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            event.remove(database.engine, "before_cursor_execute", count)
            with database.engine.connect() as conn:
                queued = conn.execute(select(func.count()).select_from(subscription_event)).scalar_one()
        finally:
            database.dispose()
            if pg_name:
                with create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT").connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    return {"seconds": wall, "cpu_seconds": cpu, "statements": statements, "notifications": int(queued)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", default="1500,6000", help="comma-separated file sizes")
    parser.add_argument("--subscriptions", type=int, default=2)
    options = parser.parse_args()
    for rows in [int(r) for r in options.rows.split(",")]:
        without = measure(options.engine, rows, 0)
        with_subs = measure(options.engine, rows, options.subscriptions)
        print(
            json.dumps(
                {
                    "engine": options.engine,
                    "rows": rows,
                    "subscriptions": options.subscriptions,
                    "notifications": with_subs["notifications"],
                    "seconds_without": round(without["seconds"], 2),
                    "seconds_with": round(with_subs["seconds"], 2),
                    "sub_ms_per_row": round(1000 * (with_subs["seconds"] - without["seconds"]) / rows, 3),
                    "sub_cpu_ms_per_row": round(
                        1000 * (with_subs["cpu_seconds"] - without["cpu_seconds"]) / rows, 3
                    ),
                    "statements_per_row": round(with_subs["statements"] / rows, 2),
                    "sub_statements_per_row": round(
                        (with_subs["statements"] - without["statements"]) / rows, 2
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
