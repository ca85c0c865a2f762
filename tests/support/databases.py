"""Real test databases: a temporary SQLite file or a temporary PostgreSQL database.

``FHIR_GATEWAY_TEST_DATABASE`` chooses the engine (``sqlite`` by default, ``postgresql``),
``FHIR_GATEWAY_TEST_PG_URL`` the PostgreSQL server (a database is created and dropped).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from fhir_gateway.storage.database import Database
from fhir_gateway.storage.schema import full_metadata

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def engine_kind() -> str:
    return os.environ.get("FHIR_GATEWAY_TEST_DATABASE", "sqlite")


@contextmanager
def temporary_database_url(tmp_dir: Path, kind: str | None = None) -> Iterator[str]:
    """A URL to a fresh, empty database of ``kind``; removed afterwards."""
    kind = kind or engine_kind()
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / f'gateway-{uuid.uuid4().hex[:8]}.db'}"
        return
    server = os.environ.get("FHIR_GATEWAY_TEST_PG_URL", DEFAULT_PG_URL)
    name = f"fgw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


KEPT_TABLES = frozenset({"server_secret"})  # the deployment's keys, made by the migration


def empty_all_tables(database: Database) -> None:
    """Delete every row of every table (between tests), keeping the schema and the deployment's
    keys (a test that needs them missing deletes them itself)."""
    names = [t.name for t in reversed(full_metadata().sorted_tables) if t.name not in KEPT_TABLES]
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)))
        else:
            for name in names:
                conn.execute(text(f'DELETE FROM "{name}"'))


@contextmanager
def cloned_database_url(url: str, tmp_dir: Path) -> Iterator[str]:
    """A copy of the database at ``url`` (nobody may be connected to it); removed afterwards."""
    if url.startswith("sqlite"):
        import sqlite3

        copy = tmp_dir / f"clone-{uuid.uuid4().hex[:8]}.db"
        source, target = sqlite3.connect(url.split("///", 1)[1]), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        yield f"sqlite:///{copy}"
        return
    server, original = url.rsplit("/", 1)
    name = f"fgw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{original}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def forget_statistics(database: Database) -> None:
    """SQLite: its planner statistics deleted, and the connections opened from here on without
    them. PostgreSQL: nothing (emptying the tables between tests resets their row estimate)."""
    if database.dialect != "sqlite":
        return
    with database.engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            conn.execute(text("DELETE FROM sqlite_stat1"))
    database.engine.dispose()


def sqlite_statistics(database: Database, index: str | None = None) -> str | None:
    """The statistics SQLite holds for ``index`` (for any index when None), or None."""
    with database.engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            return None
        query = "SELECT stat FROM sqlite_stat1" + (" WHERE idx = :index" if index else "") + " LIMIT 1"
        found = conn.execute(text(query), {"index": index} if index else {}).scalar()
        return None if found is None else str(found)
