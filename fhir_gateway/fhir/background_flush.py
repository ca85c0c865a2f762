"""A write batch's SQL run on a thread of its own while the caller goes on (issue 5).

A partner file import (``mapping.importer``) builds a chunk's resources in Python (templates,
validation, consent, index rows) and then waits while the database stores them: on PostgreSQL
the import process and the server worked in turn. Here the stored rows of a chunk
(``storing.store_rows``: versions, history, search index) go to the database from a worker
thread while the caller's thread builds the next chunk; the driver releases the interpreter
while the server works, so both proceed.

The unit of work keeps one connection and one transaction, used by one thread at a time: a
statement the caller's thread runs while rows are under way first waits for them (a
``before_cursor_execute`` listener on the connection), so the database sees the statements in
the order a synchronous flush gives, and nothing is written outside the transaction. What
follows the SQL (``storing.after_store``: consent and subscription hooks, the audit of each
write) touches the unit of work's state and runs on the caller's thread, at ``settle``.

Used where it pays (``available``: psycopg's synchronous connection, the CLI's); an asyncio
driver (the server's ``$import-partner``) runs its statements on its event loop's thread, and
sqlite3 does not gain: the caller flushes as before.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from sqlalchemy import Connection, event

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.storing import Pending, RowsToStore, after_store, rows_to_store, store_rows


class BackgroundFlushFailed(Exception):
    """The rows stored in the background could not be (``error``: the FhirError or database
    error that stopped them; ``label``: what the caller said they were). Nothing of the batch
    is stored: the caller rolls back."""

    def __init__(self, error: BaseException, label: object) -> None:
        super().__init__(str(error))
        self.error = error
        self.label = label


def available(conn: Connection) -> bool:
    """True when storing in the background pays on ``conn``: psycopg's synchronous connection
    (the server works on the other core meanwhile). sqlite3 could (``BackgroundFlush`` works on
    it) but does not pay: its ``executemany`` takes the interpreter back after every row, so the
    two threads wait for each other (20,000 visits: 9.3 -> 10.4 s); inserting from one JSON
    array instead (``json_each``, one call) gained 3 % for 80 MiB more of peak memory."""
    return isinstance(conn.connection.driver_connection, psycopg.Connection)


class BackgroundFlush:
    """At most one batch of rows under way on ``ctx``'s connection (``start``), settled before
    the next (``settle``); ``close`` when the unit of work is done with it."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgw-flush")
        self._future: Future[None] | None = None
        self._pending: Sequence[Pending] = ()
        self._label: object = None
        self._in_worker = threading.local()
        event.listen(ctx.conn, "before_cursor_execute", self._before_cursor_execute)

    @property
    def busy(self) -> bool:
        """True while a batch is under way or not yet settled."""
        return self._future is not None

    def start(self, pending: Sequence[Pending], label: object = None) -> None:
        """Store ``pending``'s rows from the worker thread (the previous batch settled first);
        ``label`` names them in a ``BackgroundFlushFailed``."""
        self.settle()
        if pending:
            self._pending, self._label = pending, label
            # the rows are made here: the worker only runs statements (fewer handovers of the
            # interpreter between the two threads)
            self._future = self._executor.submit(self._store, rows_to_store(pending))

    def _store(self, rows: RowsToStore) -> None:
        self._in_worker.active = True
        try:
            store_rows(self.ctx.conn, rows)
        finally:
            self._in_worker.active = False

    def settle(self) -> None:
        """Wait for the batch under way, then run what follows its SQL on this thread;
        ``BackgroundFlushFailed`` if it could not be stored."""
        future, pending = self._future, self._pending
        if future is None:
            return
        self._future, self._pending = None, ()
        error = future.exception()
        if error is not None:
            raise BackgroundFlushFailed(error, self._label) from error
        after_store(self.ctx, pending)

    def abandon(self) -> None:
        """Wait for the batch under way and forget it (the transaction is rolled back)."""
        future = self._future
        self._future, self._pending = None, ()
        if future is not None:
            future.exception()

    def close(self) -> None:
        """Wait for the batch under way (forgotten if not settled) and stop the worker."""
        self.abandon()
        event.remove(self.ctx.conn, "before_cursor_execute", self._before_cursor_execute)
        self._executor.shutdown(wait=True)

    def _before_cursor_execute(self, *_args: Any) -> None:
        """A statement of the caller's thread waits for the rows under way (and fails as they
        did: the transaction cannot go on)."""
        future = self._future
        if future is None or getattr(self._in_worker, "active", False):
            return
        error = future.exception()
        if error is not None:
            raise BackgroundFlushFailed(error, self._label) from error
