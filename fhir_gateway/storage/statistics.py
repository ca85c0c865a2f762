"""Planner statistics refreshed after a bulk write (PostgreSQL and SQLite ``ANALYZE``).

A partner file import changes the store's row counts and value distributions at once. Until
autovacuum analyses the tables (PostgreSQL does when a tenth of a table has changed, at its
next round), the planner keeps choosing plans made for the tables as they were: searches ran
12 times slower (about 50 instead of 600 per second under 16 clients) after a seed of 12,000
resources. An import that wrote at least ``analyze_after_rows`` resources analyses the store's
tables once it has committed:

- never inside the import's transaction: ANALYZE holds its lock until the transaction ends,
  so concurrent imports would wait for each other;
- PostgreSQL: with a lock timeout, so that an analysis already under way on a table (another
  import's, autovacuum's) is left to finish rather than waited for;
- SQLite: on a bounded sample (``PRAGMA analysis_limit``), so that it stays short however
  large the file.

Statistics are an optimisation: a failure is logged, never turned into an error of the import
that has already been committed.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from fhir_gateway.storage.tables import INDEX_TABLES, resource, resource_history

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "2s"
SQLITE_ANALYSIS_LIMIT = 1000  # rows examined per index


def _tables() -> str:
    return ", ".join(f'"{t.name}"' for t in (resource, resource_history, *INDEX_TABLES.values()))


def refresh_statistics(conn: Connection) -> bool:
    """ANALYZE the store's tables on ``conn`` (outside any write transaction); False when the
    database refused or timed out (logged as ``statistics_not_refreshed``)."""
    try:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            try:
                conn.exec_driver_sql(f"ANALYZE {_tables()}")
            finally:
                conn.exec_driver_sql("RESET lock_timeout")
        else:
            conn.exec_driver_sql(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
    except DBAPIError as exc:
        log.warning("statistics_not_refreshed: %s", type(exc.orig).__name__)
        return False
    return True
