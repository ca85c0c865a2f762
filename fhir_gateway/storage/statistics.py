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

SQLite has no autovacuum: a store filled through the REST API alone had no statistics at all,
and without them SQLite's planner picked plans that read every resource of the searched type
(``Task?patient=…&status=…`` on 24,000 resources: 7 ms instead of 0.07 ms, growing with the
table). A server on SQLite therefore analyses the store itself (``keep_sqlite_statistics``):
once it holds ``SQLITE_FIRST_ROWS`` resources, then each time their number has doubled, which
costs little each time (a bounded sample: 13 ms for 65,000 resources). SQLite's connections load statistics
when they open; a pooled connection reloads them (``ANALYZE sqlite_schema``) at its next
transaction after an analysis of this process (``reload_if_stale``). A partner file import
does the same inside its transaction, chunk after chunk (``mapping.importer``): its lookups
then follow what it has written (without statistics, the visits' CareTeam lookup read every
CareTeam for each chunk of 1,000 rows: 595 ms instead of 14 ms over a 40,000-visit import).

The sample (``SQLITE_ANALYSIS_LIMIT`` rows per index) must not be too small: with 1,000, the
statistics of the token index made a lookup of 1,000 visit identifiers read every Task's index
rows instead of probing the value index (2.6 s instead of 0.4 s over the same import).

Statistics are an optimisation: a failure is logged, never turned into an error of the import
that has already been committed, nor of a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from fhir_gateway.storage.tables import INDEX_TABLES, resource, resource_history

if TYPE_CHECKING:
    from fhir_gateway.storage.database import Database

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "2s"
SQLITE_ANALYSIS_LIMIT = 10_000  # rows examined per index (1,000 misled the planner: module docstring)
SQLITE_FIRST_ROWS = 100  # resources from which a server on SQLite analyses the store
SQLITE_GROWTH = 2  # ... and again each time their number has grown this many times
_GENERATION = "fhir_gateway_statistics_generation"
_generation = 0  # SQLite analyses made by this process: a connection that saw fewer reloads


def _store_tables() -> list[Table]:
    return [resource, resource_history, *INDEX_TABLES.values()]


# The store's tables in two groups of about the same ANALYZE cost: the token and reference index
# tables take four fifths of it (their extended statistics have a target of 1,000; after 20,000
# visits: 1.04 s and 0.78 s of 2.1 s).
_SECOND_GROUP = frozenset({"idx_reference", "resource_history", "idx_date"})


def refresh_statistics(conn: Connection, tables: Sequence[Table] | None = None) -> bool:
    """ANALYZE the store's tables (or ``tables``, on PostgreSQL) on ``conn``, outside any write
    transaction; False when the database refused or timed out (logged as
    ``statistics_not_refreshed``)."""
    try:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in (tables or _store_tables()))
            conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            try:
                conn.exec_driver_sql(f"ANALYZE {names}")
            finally:
                conn.exec_driver_sql("RESET lock_timeout")
        else:
            conn.exec_driver_sql(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
            _analysed_here()
    except DBAPIError as exc:
        log.warning("statistics_not_refreshed: %s", type(exc.orig).__name__)
        return False
    return True


def refresh_statistics_of(database: Database) -> bool:
    """``refresh_statistics`` on connections of ``database`` of its own: on PostgreSQL two
    groups of tables analysed at once, by two server processes (the caller waits for the longer
    of the two, not their sum: a partner import's CLI after its commit)."""
    if database.dialect != "postgresql":
        with database.transaction() as conn:
            return refresh_statistics(conn)
    tables = _store_tables()
    groups = [
        [t for t in tables if t.name not in _SECOND_GROUP],
        [t for t in tables if t.name in _SECOND_GROUP],
    ]

    def analyse(group: list[Table]) -> bool:
        with database.transaction() as conn:
            return refresh_statistics(conn, group)

    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="fgw-analyze") as pool:
        return all(list(pool.map(analyse, groups)))


def _analysed_here() -> None:
    global _generation  # noqa: PLW0603 - one counter per process, read at every SQLite transaction
    _generation += 1


def reload_if_stale(conn: Connection) -> None:
    """Make SQLite connection ``conn`` use the statistics of this process's latest analysis.

    SQLite reads ``sqlite_stat1`` when a connection opens; ``ANALYZE sqlite_schema`` rereads it
    (sqlite.org/lang_analyze.html). Called as each transaction begins: a dictionary lookup
    unless an analysis happened since this connection last looked."""
    seen = conn.connection.info.get(_GENERATION, 0)
    if seen != _generation:
        conn.connection.info[_GENERATION] = _generation
        try:
            conn.exec_driver_sql("ANALYZE sqlite_schema")
        except DBAPIError:  # a read-only file: SQLite refuses even this; its statistics stay
            pass


class SqliteStatistics:
    """When a SQLite store is due for an analysis: from ``SQLITE_FIRST_ROWS`` resources, then
    each time their number has grown ``SQLITE_GROWTH`` times since this process's last one."""

    def __init__(self) -> None:
        self.analysed_rows: int | None = None

    @staticmethod
    def resource_rows(conn: Connection) -> int:
        """About how many resources the store holds (the highest row number: no count scan)."""
        return int(conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM resource").scalar() or 0)

    def due(self, rows: int) -> bool:
        if self.analysed_rows is None:
            return rows >= SQLITE_FIRST_ROWS
        return rows >= max(SQLITE_FIRST_ROWS, self.analysed_rows * SQLITE_GROWTH)

    def refresh_if_due(self, conn: Connection) -> bool:
        """Analyse the store on ``conn`` if it is due (inside a transaction: what it wrote counts)."""
        rows = self.resource_rows(conn)
        return self.due(rows) and self.refresh(conn, rows)

    def refresh(self, conn: Connection, rows: int) -> bool:
        """Analyse the store (``refresh_statistics``) and remember its size then."""
        done = refresh_statistics(conn)
        if done:
            self.analysed_rows = rows
        return done


async def keep_sqlite_statistics(database: Database, interval: float) -> None:
    """Every ``interval`` seconds, analyse the SQLite store if it is due (until cancelled)."""
    keeper = SqliteStatistics()
    while True:
        try:
            if await database.run(keeper.refresh_if_due, write=True):
                log.info("statistics_refreshed: %d resources", keeper.analysed_rows)
        except Exception as exc:  # noqa: BLE001 - an optimisation: never stop serving for it
            log.warning("statistics_not_refreshed: %s", type(exc).__name__)
        await asyncio.sleep(interval)
