"""Schema migrations with Alembic (``fhir-gateway migrate``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from fhir_gateway.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database schema to ``revision``."""
    config = alembic_config(database.url)
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


@cache
def _head() -> str | None:
    """The newest revision shipped with this code (read once)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def is_current(database: Database) -> bool:
    """True when the database is at the newest migration (readiness check)."""
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == _head()
