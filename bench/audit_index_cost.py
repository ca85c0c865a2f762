#!/usr/bin/env python3
"""What storing one AuditEvent costs PostgreSQL, with its search index as today and as proposed.

docs/audit-store.md, step 2: every request writes an AuditEvent, whose search index rows (the
references ``agent``, ``entity``, ``patient`` and the ``date``) cost PostgreSQL more than the
event's own row. This script measures, in a scratch database with the gateway's tables' shape:

- ``generic``: today's rows: the ``resource`` row, one ``audit_terms`` row, four
  ``idx_reference`` rows (two B-tree indexes) and one ``idx_date`` row (three);
- ``gin``: the ``resource`` row and one ``audit_index`` row (terms, ``recorded``, the references
  as a text array under a GIN index whose pending list is merged before the clock stops);
- ``narrow``: the ``resource`` row, one row of terms and ``recorded``, and one two-column row per
  reference (``param|Type/id``, event id: a single B-tree);
- ``moved``: what migration 0013 built (``storage.audit_refs``): the ``resource`` row and one
  ``audit_terms`` row with the reference keys as text under a GIN index of ``string_to_array`` and
  ``recorded_low``, ``recorded_high`` under two B-tree indexes.

Each is written in batches of ``--batch`` events by ``COPY``, as the audit writer process does,
after ``--preload`` events so that the indexes are not empty; the figure is the backend's CPU
per event (read from /proc: the server must run on this machine).

    python bench/audit_index_cost.py [--rounds 3] [--batches 100] [--batch 150] [--preload 50000]

Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

SERVER = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "fgw_audit_index_cost"
DDL = """
create table resource (res_type varchar(64), res_id varchar(64), version int, last_updated timestamp,
  deleted bool, content text, patient_id varchar(64), method varchar(8), primary key (res_type, res_id));
create index on resource (res_type, patient_id, res_id);
create index on resource (res_type, last_updated);
create table audit_terms (res_id varchar(64) primary key, terms text not null);
create table idx_reference (res_type varchar(64) not null, res_id varchar(64) not null,
  param varchar(64) not null, target_type varchar(64), target_id varchar(64), url varchar(512));
create index on idx_reference (res_type, res_id);
create index on idx_reference (target_id, param, res_type);
create table idx_date (res_type varchar(64) not null, res_id varchar(64) not null,
  param varchar(64) not null, low timestamp, high timestamp);
create index on idx_date (res_type, res_id);
create index on idx_date (res_type, param, low);
create index on idx_date (res_type, param, high);
create table audit_index (res_id varchar(64) primary key, recorded timestamp not null,
  refs text[] not null, terms text not null);
create index on audit_index (recorded);
create index audit_index_refs on audit_index using gin (refs);
create table audit_recorded (res_id varchar(64) primary key, recorded timestamp not null,
  terms text not null);
create index on audit_recorded (recorded);
create table audit_ref (ref varchar(140) not null, res_id varchar(64) not null, primary key (ref, res_id));
create table audit_terms_moved (res_id varchar(64) primary key, terms text not null, refs text,
  recorded_low timestamp, recorded_high timestamp);
create index audit_terms_moved_refs on audit_terms_moved using gin (string_to_array(refs, E'\\x1f'));
create index on audit_terms_moved (recorded_low);
create index on audit_terms_moved (recorded_high);
"""
# an event of the gateway's shape: a partner's read (1.7 KB of JSON, 37 terms)
CONTENT = json.dumps({"resourceType": "AuditEvent", "padding": "x" * 1650})
TERMS = json.dumps([f"term\x1f{n}" for n in range(37)])
Event = tuple[str, str, datetime.datetime, list[tuple[str, str, str]]]


def events(count: int, rng: random.Random) -> list[Event]:
    """``count`` events of a partner's reads: its Organization, a Task and its person."""
    made: list[Event] = []
    for _ in range(count):
        person, task = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(int=rng.getrandbits(128)))
        refs = [
            ("agent", "Organization", f"org-{rng.randint(1, 300)}"),
            ("entity", "Task", task),
            ("entity", "Patient", person),
            ("patient", "Patient", person),
        ]
        moment = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        made.append((str(uuid.uuid4()), person, moment, refs))
    return made


def _resources(cur: Any, batch: list[Event]) -> None:
    with cur.copy("copy resource from stdin") as copy:
        for res_id, person, moment, _ in batch:
            copy.write_row(("AuditEvent", res_id, 1, moment, False, CONTENT, person, "POST"))


def write_generic(cur: Any, batch: list[Event]) -> None:
    _resources(cur, batch)
    with cur.copy("copy audit_terms from stdin") as copy:
        for res_id, *_ in batch:
            copy.write_row((res_id, TERMS))
    with cur.copy("copy idx_reference from stdin") as copy:
        for res_id, _, _, refs in batch:
            for param, target_type, target_id in refs:
                copy.write_row(("AuditEvent", res_id, param, target_type, target_id, None))
    with cur.copy("copy idx_date from stdin") as copy:
        for res_id, _, moment, _ in batch:
            copy.write_row(("AuditEvent", res_id, "date", moment, moment))


def write_gin(cur: Any, batch: list[Event]) -> None:
    _resources(cur, batch)
    with cur.copy("copy audit_index from stdin") as copy:
        for res_id, _, moment, refs in batch:
            copy.write_row((res_id, moment, [f"{p}|{t}/{i}" for p, t, i in refs], TERMS))


def write_narrow(cur: Any, batch: list[Event]) -> None:
    _resources(cur, batch)
    with cur.copy("copy audit_recorded from stdin") as copy:
        for res_id, _, moment, _ in batch:
            copy.write_row((res_id, moment, TERMS))
    with cur.copy("copy audit_ref from stdin") as copy:
        for res_id, _, _, refs in batch:
            for param, target_type, target_id in refs:
                copy.write_row((f"{param}|{target_type}/{target_id}", res_id))


def write_moved(cur: Any, batch: list[Event]) -> None:
    _resources(cur, batch)
    with cur.copy("copy audit_terms_moved from stdin") as copy:
        for res_id, _, moment, refs in batch:
            copy.write_row((res_id, TERMS, "\x1f".join(f"{p}|{t}/{i}" for p, t, i in refs), moment, moment))


LAYOUTS: dict[str, Callable[[Any, list[Event]], None]] = {
    "generic": write_generic,
    "gin": write_gin,
    "narrow": write_narrow,
    "moved": write_moved,
}


_GIN = {"gin": "audit_index_refs", "moved": "audit_terms_moved_refs"}


def backend_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds (user + system) of ``conn``'s server process so far."""
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    with open(f"/proc/{row[0]}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--preload", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(7)
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"drop database if exists {DATABASE}")
        admin.execute(f"create database {DATABASE}")
    try:
        with psycopg.connect(f"{SERVER}/{DATABASE}", autocommit=True) as conn:
            conn.execute(DDL)
            for write in LAYOUTS.values():
                with conn.transaction():
                    for _ in range(max(1, args.preload // 500)):
                        write(conn.cursor(), events(500, rng))
            conn.execute("vacuum analyze")
            figures: dict[str, list[float]] = {name: [] for name in LAYOUTS}
            for _ in range(args.rounds):
                for name, write in LAYOUTS.items():
                    batches = [events(args.batch, rng) for _ in range(args.batches)]
                    before = backend_cpu(conn)
                    for batch in batches:
                        with conn.transaction():
                            write(conn.cursor(), batch)
                    if name in _GIN:  # the pending entries' merge is part of the cost
                        conn.execute(f"select gin_clean_pending_list('{_GIN[name]}')")
                    spent = backend_cpu(conn) - before
                    figures[name].append(round(1e6 * spent / (args.batches * args.batch), 1))
            print(json.dumps({"postgres_cpu_us_per_event": figures, "batch": args.batch}))
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"drop database if exists {DATABASE}")


if __name__ == "__main__":
    main()
