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
def _script() -> ScriptDirectory:
    """The migrations shipped with this code (read once)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def _head() -> str | None:
    """The newest revision shipped with this code."""
    return _script().get_current_head()


def schema_state(database: Database) -> str:
    """``current`` (at this code's newest migration), ``pending`` (older or empty: run
    ``fhir-gateway migrate``) or ``newer`` (migrated by a newer release: this server is the
    old one of an upgrade)."""
    with database.engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision == _head():
        return "current"
    known = {script.revision for script in _script().walk_revisions()}
    return "pending" if revision is None or revision in known else "newer"


def is_current(database: Database) -> bool:
    """True when the database is at the newest migration (readiness check)."""
    return schema_state(database) == "current"
