"""Migrations: the migrated schema is the one the code declares, and data migrations keep what
searches need (on the test engine: SQLite or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from fhir_gateway.storage.schema import full_metadata
from fhir_gateway.storage.tables import POSTGRESQL_ONLY_INDEXES, idx_date, idx_reference, idx_token
from tests.support.databases import temporary_database_url


def test_migrated_schema_is_the_declared_one(tmp_path: Path) -> None:
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database)
            with database.engine.connect() as conn:
                differences = compare_metadata(MigrationContext.configure(conn), full_metadata())
        finally:
            database.dispose()
    # column types and server defaults are dialect spellings; tables and indexes must match
    structural = [d for d in differences if isinstance(d, tuple) and d[0] in {"add_table", "remove_table",
                  "add_index", "remove_index", "add_column", "remove_column"}]  # fmt: skip
    if not url.startswith("postgresql"):  # declared for PostgreSQL only (``ddl_if``)
        skipped = {index.name for index in POSTGRESQL_ONLY_INDEXES}
        structural = [d for d in structural if not (d[0] == "add_index" and d[1].name in skipped)]
    kinds = ("add_index", "remove_index")
    indexes = {kind: {d[1].name for d in structural if d[0] == kind} for kind in kinds}
    respelled = indexes["add_index"] & indexes["remove_index"]  # an expression index: named alike only
    structural = [d for d in structural if not (d[0] in indexes and d[1].name in respelled)]
    assert structural == []


def test_0007_drops_the_row_parameters_index_rows_and_the_unused_reference_index(tmp_path: Path) -> None:
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database, "0006")
            with database.engine.begin() as conn:
                conn.execute(
                    insert(idx_token),
                    [
                        {"res_type": "Task", "res_id": "t1", "param": "_id", "code": "t1"},
                        {"res_type": "Task", "res_id": "t1", "param": "status", "code": "requested"},
                    ],
                )
                conn.execute(
                    insert(idx_date),
                    [
                        {"res_type": "Task", "res_id": "t1", "param": "_lastUpdated"},
                        {"res_type": "Task", "res_id": "t1", "param": "authored-on"},
                    ],
                )
            upgrade(database, "0007")
            with database.engine.connect() as conn:
                tokens = conn.execute(select(idx_token.c.param)).scalars().all()
                dates = conn.execute(select(idx_date.c.param)).scalars().all()
                indexes = {i["name"] for i in inspect(conn).get_indexes(idx_reference.name)}
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        finally:
            database.dispose()
    assert (tokens, dates) == (["status"], ["authored-on"])
    assert indexes == {"ix_idx_reference_owner", "ix_idx_reference_target_id_param_res_type"}
    assert revision == "0007"
