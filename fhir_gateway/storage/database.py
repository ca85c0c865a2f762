"""Engine creation and the unit of work (DESIGN.md, A request's way).

The caller of ``Database.transaction`` owns the transaction: commit when the block ends,
rollback on any error. On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so
that concurrent writers queue on the database lock instead of failing half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.concurrency import run_in_threadpool

from fhir_gateway.kit.errors import ServiceUnavailable
from fhir_gateway.kit.greenlet_runs import run_in_greenlet
from fhir_gateway.storage import direct
from fhir_gateway.storage.faults import connection_lost, storage_refusal
from fhir_gateway.storage.statistics import reload_if_stale

_WRITE_FLAG = "fhir_gateway_write"
WRITE_WAIT_SECONDS = 30.0  # SQLite: as long as its busy timeout
T = TypeVar("T")


def cache_long_statements() -> None:
    """Let psycopg keep its parsed form of long statements too.

    psycopg re-parses, at every execution, statements over 4 KB or with more than 50
    parameters (to keep ever-changing ORM statements out of its cache). The gateway's
    consent filters are long but stable (built once per kind of caller), and re-parsing
    them cost half a millisecond per request.
    """
    from psycopg import _queries

    if hasattr(_queries, "MAX_CACHED_STATEMENT_LENGTH"):
        _queries.MAX_CACHED_STATEMENT_LENGTH = 64 * 1024
        _queries.MAX_CACHED_STATEMENT_PARAMS = 1000


def make_engine(url: str, pool_size: int = 10, *, pooled: bool = True) -> Engine:
    """An engine for ``url`` with the dialect settings the gateway relies on (SQLite: ``pooled``
    False for connections kept by their user, ``Database._run_brief``)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
            **({} if pooled else {"poolclass": NullPool}),
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.info.pop(_WRITE_FLAG, False)
            reload_if_stale(conn)  # the planner statistics of the latest analysis
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    cache_long_statements()
    # Every checkout ends its own transaction (Database.transaction), so no reset round trip.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_recycle=1800,
        pool_reset_on_return=None,
        hide_parameters=True,  # logged database errors never carry the values (names, identifiers)
    )
    _checkouts_skip_hung_up(engine)
    return engine


class _KeptConnections:
    """The open connections of one engine for one event loop: at most ``size``, reused.

    Taking a kept connection skips the pool's checkout and return and SQLAlchemy's set-up of
    a connection: about a fifth of the cost of a read's unit of work. At most ``size`` are
    open at once; a unit of work that finds them all busy waits for one to be given back
    (at most ``WAIT_SECONDS``, then a 503) rather than opening a connection of its own to
    close right after, which cost more than the request itself (a PostgreSQL session is a
    process to start). A connection is kept only after a unit that ended cleanly (committed,
    or rolled back after an error that was not the database's); one idle longer than
    ``MAX_IDLE_SECONDS`` is closed rather than reused (the server or a firewall may have
    cut it), and a connection the server closed makes every idle one be dropped (they were
    likely cut too).

    A kept connection is also dropped when its socket has something to read: nothing is
    sent to an idle session unasked but the server's last words (a restart or
    ``pg_terminate_backend`` sends a FATAL error, then closes). That check is one system
    call, no round trip, so a cut while idle costs no request a 503.
    """

    MAX_IDLE_SECONDS = 300.0
    WAIT_SECONDS = 30.0

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self.size = size
        self._idle: list[tuple[float, AsyncConnection]] = []
        self._open = 0  # idle and in use
        # units waiting, first come first served: each is handed a connection given back, or
        # None when one was closed (room to open one)
        self._waiters: deque[asyncio.Future[AsyncConnection | None]] = deque()

    async def take(self) -> AsyncConnection:
        while True:
            now = time.monotonic()
            while self._idle:
                parked, conn = self._idle.pop()
                if now - parked < self.MAX_IDLE_SECONDS and not conn.invalidated and _still_open(conn):
                    return conn
                await self._drop(conn)
            if self._open < self.size:
                self._open += 1
                try:
                    return await self.engine.connect()
                except BaseException:
                    self._open -= 1
                    raise
            handed = await self._wait_for_one()
            if handed is not None:
                return handed

    async def _wait_for_one(self) -> AsyncConnection | None:
        """The connection the next ``give_back`` hands over (None: one was closed, so one may be
        opened); a 503 after ``WAIT_SECONDS``. A future and a timer per wait: a condition
        variable under ``wait_for`` cost a task, a lock and a timer, and a unit arriving as a
        connection came back could take it before the unit woken for it."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AsyncConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        expiry = loop.call_later(self.WAIT_SECONDS, _too_long, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over as the unit was cancelled
                self._hand_over(waiter.result())
            raise
        finally:
            expiry.cancel()

    def _hand_over(self, conn: AsyncConnection | None) -> bool:
        """Give ``conn`` (or the room to open one) to the unit waiting longest, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # else it timed out or was cancelled meanwhile
                waiter.set_result(conn)
                return True
        return False

    async def give_back(self, conn: AsyncConnection, reusable: bool) -> None:
        cut = conn.invalidated  # read before closing: a closed connection no longer says
        if reusable and not cut:
            if not self._hand_over(conn):
                self._idle.append((time.monotonic(), conn))
            return
        try:
            await self._drop(conn)
            if cut:
                await self.close_idle()
        finally:  # even when cancelled while closing: a waiting unit may now open one
            self._hand_over(None)

    async def _drop(self, conn: AsyncConnection, *, loop_ended: bool = False) -> None:
        """Close a connection for good (letting the pool forget it if its server side is gone).

        ``loop_ended``: the connection's event loop has ended: it is then cut (``_cut_asyncpg``),
        as asyncpg cannot close it without its loop.
        """
        self._open -= 1
        if loop_ended:
            _cut_asyncpg(conn)
        try:
            if not conn.invalidated and not _still_open(conn):
                await conn.invalidate()
        finally:
            await conn.close()

    async def close_idle(self, *, loop_ended: bool = False) -> None:
        idle, self._idle = self._idle, []
        for _, conn in idle:
            await self._drop(conn, loop_ended=loop_ended)


def _too_long(waiter: asyncio.Future[AsyncConnection | None]) -> None:
    if not waiter.done():
        busy = "Every database connection is busy; try again shortly"
        waiter.set_exception(ServiceUnavailable(busy, headers={"Retry-After": "5"}))


def _cut_asyncpg(conn: AsyncConnection) -> None:
    """Cut an asyncpg connection whose event loop has ended: its socket is shut down (the
    server ends the session at once) and the connection marked closed, so that closing it
    after needs no loop. (Its graceful close needs its own loop; the file descriptor goes with
    the transport, at garbage collection.) psycopg's connections are left as they are."""
    driver: Any = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
    transport = getattr(driver, "_transport", None)
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(RuntimeError):  # it marks itself closed, then finds its loop closed
        driver.terminate()


def _hung_up(driver_connection: Any) -> bool:
    """True when the server has spoken to, or hung up on, this idle connection.

    asyncpg reads its socket from the event loop all the time: it knows. psycopg's socket is
    asked, without a round trip.
    """
    closed = getattr(driver_connection, "is_closed", None)
    if closed is not None:
        return bool(closed())
    try:
        socket = driver_connection.pgconn.socket
    except Exception:  # closed, or not a psycopg connection: its use will tell
        return False
    readable, _, _ = select.select([socket], [], [], 0)
    return bool(readable)


def _still_open(conn: AsyncConnection) -> bool:
    return not _hung_up(conn.sync_connection.connection.driver_connection)  # type: ignore[union-attr]


def _checkouts_skip_hung_up(engine: Engine) -> None:
    """A pooled connection the server hung up on is replaced at checkout, without a round trip
    (SQLAlchemy's "disconnect handling, pessimistic" with a socket check instead of a ping)."""

    @event.listens_for(engine, "checkout")
    def _check(_dbapi: Any, record: Any, _proxy: Any) -> None:
        if _hung_up(record.driver_connection):
            raise DisconnectionError("the database server closed this connection")


class _AsyncEngines:
    """The asyncio engines of one event loop (PostgreSQL), and their kept connections.

    Two sets of asyncpg connections: write transactions, and reads whose connections are in
    autocommit from the start (setting and resetting the isolation level at every checkout
    cost more CPU than the read's statement itself). Each may open half of ``pool_size``
    (``_KeptConnections`` is their pool: the engines open and close, nothing more). The
    synchronous engine (the CLI, the audit writer process) stays on psycopg, for ``COPY``.
    """

    closer: AsyncGenerator[None, None] | None = None  # see ``Database._close_at_loop_end``

    def __init__(self, url: URL, pool_size: int) -> None:
        half = max(2, pool_size // 2)
        options: dict[str, Any] = {
            "poolclass": NullPool,
            "pool_reset_on_return": None,
            "hide_parameters": True,  # a logged database error must not carry a person's data
        }
        options["async_creator"] = partial(_asyncpg_connect, url.set(drivername="postgresql"))
        self.write = _KeptConnections(create_async_engine("postgresql+asyncpg://", **options), half)
        self.read = _KeptConnections(
            create_async_engine("postgresql+asyncpg://", isolation_level="AUTOCOMMIT", **options), half
        )
        for kept in (self.write, self.read):
            _lost_connections_invalidated(kept.engine)
            # SQLAlchemy's own statements are refused after a unit's last one, as ``direct``'s are
            event.listen(kept.engine.sync_engine, "before_cursor_execute", direct.refuse_after_last)

    async def dispose(self, *, loop_ended: bool = False) -> None:
        """Close both pools' connections (``loop_ended``: they belong to a loop that has ended)."""
        for kept in (self.write, self.read):
            await kept.close_idle(loop_ended=loop_ended)
            await kept.engine.dispose()
        if loop_ended and self.closer is not None:
            await self.closer.aclose()  # from this loop: the ended loop can no longer run it


def _lost_connections_invalidated(engine: AsyncEngine) -> None:
    """Count as a disconnection every error saying the connection is gone (``faults.connection_lost``):
    SQLAlchemy then invalidates the connection and the error says so (``connection_invalidated``,
    a 503 for the client, ``errors_http``). asyncpg raises some of these as interface errors
    SQLAlchemy does not recognise (a statement on a session the server ended while idle)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _lost(context: Any) -> None:
        if not context.is_disconnect and connection_lost(context.original_exception):
            context.is_disconnect = True


READ_STATEMENTS_KEPT = 1024  # prepared statements an asyncpg connection keeps (asyncpg: 100)

# A request's prepared statements run on their generic plan (PostgreSQL's
# ``plan_cache_mode``). They are built once per search shape for any values (``search.compiler``:
# per-row tests where a value's frequency would matter), and planning one with its consent filter
# costs 1 to 2 ms, ten times its execution. Left to choose (``auto``), PostgreSQL compares the
# estimated costs of both plans, which moved with the index tables' statistics: once the
# AuditEvents' rows had left ``idx_reference`` (migration 0013), it planned every execution of
# ``CarePlan?subject=…&_include=CarePlan:care-team`` again (PostgreSQL 850 instead of 193 µs per
# search). A search whose best plan depends on its values is planned with them
# (``planned_with_values``), and a partner file import plans each execution (``bulk_transaction``).
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


@contextmanager
def planned_with_values(conn: Connection) -> Iterator[None]:
    """Statements run in this block are planned with their values each time (on a request's
    asyncpg session, whose statements otherwise run on their generic plan: ``GENERIC_PLANS``):
    for a search whose best plan depends on its values (``search.shape.plans_with_values``: a
    ``_lastUpdated`` of the last minute on a type of 250,000 rows took 203 ms on the generic plan,
    which reads the type in id order, and 26 ms planned with its value). Two more round trips,
    for searches of that kind only."""
    if conn.dialect.driver != "asyncpg":  # other sessions keep PostgreSQL's own choice (``auto``)
        yield
        return
    direct.execute(conn, "SET plan_cache_mode = force_custom_plan", ())
    try:
        yield
    finally:
        # in a transaction the failed statement aborted, its rollback undoes the SET as well
        with contextlib.suppress(DBAPIError):
            direct.execute(conn, f"SET plan_cache_mode = {GENERIC_PLANS['plan_cache_mode']}", ())


async def _asyncpg_connect(url: URL) -> Any:
    """An asyncpg connection for a request's units, reads and writes (``storage.direct``).

    asyncpg executes a statement for about half the CPU psycopg's asyncio connection spends
    (a trivial statement's round trip: 53 against 104 µs of client CPU on the 2026-11-28
    machine), and a partner's create about a quarter less serving CPU on it than on psycopg.
    It reads the same ``postgresql://`` URL as libpq (host, port, user, password, database,
    ``sslmode``, ``sslrootcert``...; other query options become server settings). Statements
    up to 64 KB are kept prepared (asyncpg's default stops at 15 KB; the consent filters are
    long but stable, as for psycopg in ``cache_long_statements``).
    """
    import asyncpg

    return await asyncpg.connect(
        url.render_as_string(hide_password=False),
        statement_cache_size=READ_STATEMENTS_KEPT,
        max_cacheable_statement_size=64 * 1024,
        server_settings=GENERIC_PLANS,
    )


def _unreachable(exc: DBAPIError) -> ServiceUnavailable:
    """503 when no connection can be opened (server down, or all its connection slots taken).

    A server that refuses the new session because its storage is full (a session starting
    while PostgreSQL's WAL filesystem is full gets SQLSTATE 53100) says so.
    """
    refusal = storage_refusal(exc)
    if refusal is not None:
        return ServiceUnavailable(refusal, headers={"Retry-After": "30"})
    return ServiceUnavailable(
        "The database is not reachable; try again shortly", headers={"Retry-After": "5"}
    )


class Database:
    """The process's engine and its transactions."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.dialect = self.engine.dialect.name
        self.pool_size = pool_size
        self.is_async = self.dialect == "postgresql"
        # asyncio pools belong to one event loop: one pair of engines per running loop (a
        # server has one; tests start several).
        # Held until the loop shuts down (``_close_at_loop_end``), the application stops
        # (``dispose_async``) or, for a loop closed without its shutdown, until the next loop's
        # first unit sees it closed: its kept connections are then cut.
        self._loop_engines: dict[asyncio.AbstractEventLoop, _AsyncEngines] = {}
        self._loop_engines_lock = threading.Lock()
        # SQLite: one write transaction of this process at a time (``_in_turn``)
        self._write_turns = threading.RLock() if self.dialect == "sqlite" else None
        # SQLite file: each event loop's connection for brief reads (``run(..., brief=True)``),
        # opened outside the pool
        self._brief: dict[asyncio.AbstractEventLoop, Connection] = {}
        self._brief_engine = (
            make_engine(url, pooled=False) if self.dialect == "sqlite" and not self.in_memory else None
        )

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: only this process's pooled connections can open it."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    async def _engines(self) -> _AsyncEngines:
        loop = asyncio.get_running_loop()
        engines = self._loop_engines.get(loop)
        if engines is not None:
            return engines
        with self._loop_engines_lock:  # loops of other threads may be here at the same time
            created = loop not in self._loop_engines
            if created:
                self._loop_engines[loop] = _AsyncEngines(self.engine.url, self.pool_size)
            engines = self._loop_engines[loop]
            ended = [self._loop_engines.pop(other) for other in list(self._loop_engines) if other.is_closed()]
        if created:
            closer = engines.closer = self._close_at_loop_end(loop)
            await closer.asend(None)
        for pools in ended:
            await pools.dispose(loop_ended=True)
        return engines

    async def _close_at_loop_end(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        """Closes ``loop``'s connections, on ``loop``, when it shuts down.

        Suspended at its ``yield`` for the loop's life; the loop's shutdown (``asyncio.run``,
        uvicorn, anyio: ``shutdown_asyncgens``) closes the generator, whose ``finally`` then
        closes the connections gracefully while the loop still runs. A loop closed without
        that shutdown has its connections cut by the next loop's first unit, which closes
        this generator from there (doing nothing more).
        """
        try:
            yield
        finally:
            if asyncio.get_running_loop() is loop:
                await self.dispose_async()

    async def run(self, work: Callable[[Connection], T], *, write: bool = False, brief: bool = False) -> T:
        """``work(conn)`` in one transaction, without blocking the event loop.

        PostgreSQL: on the asyncio driver, ``work`` runs as ordinary synchronous code whose
        statements are awaited underneath (SQLAlchemy ``AsyncConnection.run_sync``): no
        thread per request. SQLite: in the thread pool, as its driver is synchronous; a
        ``brief`` read (one REST interaction's, bounded by its page) runs on the event loop
        itself (``_run_brief``; a file database: an in-memory one is the pool's alone).
        """
        if not self.is_async:
            if brief and not write and self._brief_engine is not None:
                return self._run_brief(self._brief_engine, work)
            return await run_in_threadpool(self._run_sync, work, write)
        engines = await self._engines()
        kept = engines.write if write else engines.read
        try:
            return await self._run_on(kept, work, write)
        except DBAPIError as exc:
            if write or not exc.connection_invalidated:
                raise
        # A read on a connection the server had closed (restart, failover, idle cut): the
        # pool now discards its older connections; a read changes nothing, so once more.
        return await self._run_on(kept, work, write)

    @staticmethod
    async def _run_on(kept: _KeptConnections, work: Callable[[Connection], T], write: bool) -> T:
        try:
            async_conn = await kept.take()
        except (OperationalError, DBAPIError) as exc:
            raise _unreachable(exc) from exc
        reusable = False
        try:
            # as ``async_conn.run_sync`` does, in a greenlet kept for reuse (``kit.greenlet_runs``)
            sync_conn = async_conn.sync_connection
            assert sync_conn is not None
            result: T = await run_in_greenlet(_in_transaction if write else _in_autocommit, sync_conn, work)
            reusable = True
            return result
        except DBAPIError:
            raise
        except Exception:
            reusable = True  # rolled back by ``_in_transaction``; the connection is sound
            raise
        finally:
            if write and async_conn.sync_connection is not None:  # only a write unit ends early
                direct.unit_ended(async_conn.sync_connection)
            await kept.give_back(async_conn, reusable)

    def _run_brief(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        """SQLite: a brief read on the running loop's own connection, in this thread.

        An in-process SQLite read takes tens of microseconds; handing it to a worker thread
        cost more than that, and with 16 concurrent clients the threads' contention for the
        interpreter lock cost more still: reads served 1,134/s that way against 3,994/s on the
        loop (../shared/bench/fhirload.py, 16 clients, one worker). A WAL reader never waits
        for a writer's lock, and the loop's connection is its own (not the pool's, which
        writes waiting for the database lock may hold), so the loop waits for nothing but the
        read itself.
        """
        loop = asyncio.get_running_loop()
        conn = self._brief.get(loop)
        if conn is None or conn.closed or conn.invalidated:
            for ended in [other for other in self._brief if other.is_closed()]:
                self._brief.pop(ended).close()
            try:
                conn = self._brief[loop] = engine.connect()
            except (OperationalError, DBAPIError) as exc:
                raise _unreachable(exc) from exc
        with conn.begin():
            return work(conn)

    def _close_brief(self) -> None:
        while self._brief:
            self._brief.popitem()[1].close()

    def _run_sync(self, work: Callable[[Connection], T], write: bool) -> T:
        with self.transaction(write=write) as conn:
            return work(conn)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """One database transaction: commit on success, rollback on error.

        ``write=False`` on PostgreSQL: autocommit, each statement on its own (no BEGIN/COMMIT).
        """
        with self._in_turn() if write else contextlib.nullcontext():
            yield from self._transaction(write)

    def _transaction(self, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise _unreachable(exc) from exc
        try:
            if write:
                conn.info[_WRITE_FLAG] = True
            elif self.dialect == "postgresql":
                # A read needs no BEGIN/COMMIT round trips: each statement sees committed data
                # and carries its own consent filter. Writes keep one transaction.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            with conn.begin():
                yield conn
        finally:
            conn.info.pop(_WRITE_FLAG, None)
            conn.close()

    @contextmanager
    def _in_turn(self) -> Iterator[None]:
        """SQLite: this process's write transactions wait here for each other, in turn.

        SQLite lets one writer at a time; the others wait in its busy handler, which polls by
        sleeps growing to 100 ms, so the lock often stood free while every waiter slept: under
        16 clients creating Tasks, p90 395 ms and p99 933 ms for a 1 ms write. A thread lock
        wakes the next writer as soon as the previous one commits. Writers of other processes
        (more workers, a CLI import) still meet in SQLite's busy handler.
        """
        if self._write_turns is None:
            yield
            return
        if not self._write_turns.acquire(timeout=WRITE_WAIT_SECONDS):
            raise ServiceUnavailable(
                "The database is busy with other writes; retry later", headers={"Retry-After": "1"}
            )
        try:
            yield
        finally:
            self._write_turns.release()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError):
            return False

    def dispose(self) -> None:
        """Close every connection: the synchronous engine's and the asyncio pools of loops
        that did not close theirs (``dispose_async``)."""
        with self._loop_engines_lock:
            leftover = list(self._loop_engines.values())
            self._loop_engines.clear()
        if leftover:
            # their loops have ended (their connections are cut); a thread of its own runs the
            # closing loop whether or not this thread is running one
            worker = threading.Thread(target=asyncio.run, args=(_dispose_all(leftover),))
            worker.start()
            worker.join()
        self._close_brief()
        if self._brief_engine is not None:
            self._brief_engine.dispose()
        self.engine.dispose()

    async def dispose_async(self) -> None:
        """Close the running loop's asyncio pools."""
        with self._loop_engines_lock:
            engines = self._loop_engines.pop(asyncio.get_running_loop(), None)
        if engines is not None:
            await engines.dispose()


async def _dispose_all(engines: list[_AsyncEngines]) -> None:
    for pools in engines:
        await pools.dispose(loop_ended=True)


def _in_transaction(conn: Connection, work: Callable[[Connection], T]) -> T:
    with conn.begin():
        return work(conn)


def _in_autocommit(conn: Connection, work: Callable[[Connection], T]) -> T:
    """``work`` on a read connection in autocommit: no BEGIN/COMMIT is sent, and statements
    run by ``storage.direct`` need no SQLAlchemy transaction either. One that SQLAlchemy began
    for its own statements is ended before the connection is kept for the next unit."""
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction():
            conn.rollback()
        raise
    if conn.in_transaction():
        conn.commit()
    return result


BULK_CACHE_KIB = 64 * 1024  # SQLite page cache of a bulk transaction


@contextmanager
def bulk_transaction(conn: Connection) -> Iterator[None]:
    """Settings for a long write transaction (a partner file import), restored after it.

    PostgreSQL: plan each execution of prepared statements. The transaction fills tables
    whose statistics are those of before it: after five executions, the generic plan
    PostgreSQL picks from them for a search can scan what the transaction added (10 ms
    instead of 0.1 ms per search, growing with the file). Custom plans cost a little
    planning each time and follow the values searched.
    SQLite: a page cache of ``BULK_CACHE_KIB`` (2 MiB by default) for the indexes it grows.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before or -2000)}")
