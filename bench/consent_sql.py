#!/usr/bin/env python3
"""Cost of the consent filter at the SQL level (issue 4): partner vs trusted Task searches.

Seeds 500 patients x 20 tasks, 1,000 Consents (a permit and a deny per person, among 20
organisations) and 250 CareTeams into a fresh database, then times the two queries of a
search page (the page, newest first, and the total) for a trusted client and for a
partner. Figures only, never pass/fail.

    python bench/consent_sql.py [--engine postgresql|sqlite] [--patients 500] [--tasks 20] [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import ColumnElement, func, select

from fhir_gateway.auth.context import AccessContext, ScopeGrant
from fhir_gateway.consent import hooks
from fhir_gateway.consent.visibility import visible_clause
from fhir_gateway.storage import consent_tables  # noqa: F401
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.repository import insert_first_version
from fhir_gateway.storage.tables import metadata, resource
from tests.support.databases import temporary_database_url

ORGS = [f"Organization/o{i}" for i in range(20)]
SCOPE = {"coding": [{"code": "patient-privacy"}]}


def seed(db: Database, patients: int, tasks: int) -> None:
    rnd = random.Random(7)
    now = datetime.now(UTC).replace(tzinfo=None)
    with db.transaction(write=True) as conn:
        for p in range(patients):
            insert_first_version(conn, "Patient", f"p{p}", '{"resourceType":"Patient"}', f"p{p}", now)
            for t in range(tasks):
                body = json.dumps({"resourceType": "Task", "for": {"reference": f"Patient/p{p}"}})
                insert_first_version(conn, "Task", f"t{p}-{t}", body, f"p{p}", now)
            permit, deny = rnd.sample(ORGS, 2)
            for cid, kind, org in ((f"c{p}a", "permit", permit), (f"c{p}b", "deny", deny)):
                prov = {"type": kind, "actor": [{"reference": {"reference": org}}]}
                body_c = {
                    "resourceType": "Consent",
                    "status": "active",
                    "scope": SCOPE,
                    "patient": {"reference": f"Patient/p{p}"},
                    "provision": prov,
                }
                insert_first_version(conn, "Consent", cid, json.dumps(body_c), f"p{p}", now)
                hooks.after_write(conn, "Consent", cid, body_c)
            if p % 2 == 0:
                team = {
                    "resourceType": "CareTeam",
                    "status": "active",
                    "subject": {"reference": f"Patient/p{p}"},
                    "participant": [{"member": {"reference": o}} for o in rnd.sample(ORGS, 3)],
                }
                insert_first_version(conn, "CareTeam", f"ct{p}", json.dumps(team), f"p{p}", now)
                hooks.after_write(conn, "CareTeam", f"ct{p}", team)


def timed(db: Database, clause: ColumnElement[bool], rounds: int) -> tuple[float, int]:
    page = (
        select(resource.c.res_id, resource.c.content)
        .where(resource.c.res_type == "Task", clause)
        .order_by(resource.c.last_updated.desc(), resource.c.res_id)
        .limit(20)
    )
    total = select(func.count()).select_from(resource).where(resource.c.res_type == "Task", clause)
    count = 0
    start = time.perf_counter()
    for _ in range(rounds):
        with db.transaction() as conn:
            conn.execute(page).all()
            count = int(conn.execute(total).scalar_one())
    return (time.perf_counter() - start) / rounds * 1000, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="postgresql")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    scopes = (ScopeGrant("system", "*", frozenset("rs")),)
    trusted = AccessContext("trusted", scopes, trusted=True)
    partner = AccessContext("partner", scopes, organization=ORGS[0], purpose="COC")
    with tempfile.TemporaryDirectory() as tmp, temporary_database_url(Path(tmp), args.engine) as url:
        db = Database(url)
        metadata.create_all(db.engine)
        seed(db, args.patients, args.tasks)
        if db.dialect == "postgresql":
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
        out = {}
        for name, access in (("trusted", trusted), ("partner", partner)):
            for policy in ("care-team-opt-out", "opt-in"):
                ms, count = timed(db, visible_clause(access, resource, "Task", policy=policy), args.rounds)
                out[f"{name}/{policy}"] = {"ms_per_page_and_total": round(ms, 3), "total": count}
        db.dispose()
    print(
        json.dumps({"engine": args.engine, "patients": args.patients, "tasks": args.tasks, **out}, indent=2)
    )


if __name__ == "__main__":
    main()
