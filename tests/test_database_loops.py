"""The asyncio pools follow the event loops (PostgreSQL): one pair per running loop.

A server runs one loop; test clients and embedding tools run several, one after another
or at once in several threads. A pool shared by loops of several threads hangs as soon as
a request waits for a connection, so each loop gets its own pools, and the pools of loops
that have ended are closed, not left to the garbage collector. Within a loop, each kind of
unit (reads, writes) has at most half of ``pool_size`` connections, reused; a burst waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from fhir_gateway.kit.errors import ServiceUnavailable
from fhir_gateway.storage.database import Database, _KeptConnections
from tests.support.databases import engine_kind, temporary_database_url


def _sleep(conn: Connection) -> int:
    return int(conn.execute(text("SELECT 1 FROM pg_sleep(0.01)")).scalar_one())


def _connections(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def _one_loop(database: Database, requests: int) -> list[int]:
    async def burst() -> list[int]:
        return list(await asyncio.gather(*(database.run(_sleep) for _ in range(requests))))

    return asyncio.run(burst())


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[Database]:
    """A database of its own: the connections counted are this test's only."""
    if engine_kind() != "postgresql":
        pytest.skip("asyncio pools are PostgreSQL's (SQLite runs in the thread pool)")
    with temporary_database_url(tmp_path) as url:
        database = Database(url, pool_size=4)
        yield database
        database.dispose()


def test_pools_of_ended_loops_are_closed(pg_database: Database) -> None:
    before = _connections(pg_database)
    for _ in range(30):
        assert _one_loop(pg_database, 6) == [1] * 6
    # each loop closed its own as it ended (at most the last loop's two pools' kept size may
    # still be on their way out)
    assert _connections(pg_database) - before <= 4


def test_loops_of_several_threads_at_once_never_share_a_pool(pg_database: Database) -> None:
    """Eight threads, each with its own loop, each asking for more connections than a pool keeps."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _i: _one_loop(pg_database, 5), range(8)))
    assert results == [[1] * 5] * 8


def _backend(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid() FROM pg_sleep(0.005)")).scalar_one())


def test_a_burst_waits_for_the_open_connections_instead_of_opening_more(pg_database: Database) -> None:
    """40 reads at once with two read connections allowed (pool_size 4): they take turns on the
    same two server sessions; none is opened for one request and closed after it."""

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(pg_database.run(_backend) for _ in range(40))))

    sessions = asyncio.run(burst())
    assert len(sessions) == 40
    assert len(set(sessions)) <= 2


def test_a_unit_that_waits_too_long_for_a_connection_gets_a_503(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_KeptConnections, "WAIT_SECONDS", 0.2)

    def _long(conn: Connection) -> int:
        return int(conn.execute(text("SELECT 1 FROM pg_sleep(1)")).scalar_one())

    async def crowd() -> list[object]:
        holders = [asyncio.ensure_future(pg_database.run(_long)) for _ in range(2)]
        await asyncio.sleep(0.1)  # both read connections taken
        late = await asyncio.gather(pg_database.run(_sleep), return_exceptions=True)
        return [*(await asyncio.gather(*holders)), *late]

    first, second, late = asyncio.run(crowd())
    assert (first, second) == (1, 1)
    assert isinstance(late, ServiceUnavailable)
    assert late.headers == {"Retry-After": "5"}


def test_a_connection_given_back_goes_to_the_unit_waiting_longest(pg_database: Database) -> None:
    async def turns() -> list[str]:
        kept = (await pg_database._engines()).read  # two connections at most
        held = [await kept.take(), await kept.take()]
        served: list[str] = []

        async def unit(name: str) -> None:
            conn = await kept.take()
            served.append(name)
            await asyncio.sleep(0.01)
            await kept.give_back(conn, True)

        waiting = [asyncio.ensure_future(unit(name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0.01)  # all three wait
        late = asyncio.ensure_future(unit("late"))  # arrives after them
        await asyncio.sleep(0)
        for conn in held:
            await kept.give_back(conn, True)
        await asyncio.gather(*waiting, late)
        assert (kept._open, len(kept._idle), len(kept._waiters)) == (2, 2, 0)
        return served

    assert asyncio.run(turns()) == ["first", "second", "third", "late"]


def test_a_connection_handed_to_a_unit_cancelled_meanwhile_goes_to_the_next(pg_database: Database) -> None:
    """A request cancelled (its client gone) just as a connection is handed to it loses nothing."""

    async def handed_on() -> None:
        kept = (await pg_database._engines()).read
        first, second = await kept.take(), await kept.take()
        cancelled = asyncio.ensure_future(kept.take())
        next_one = asyncio.ensure_future(kept.take())
        await asyncio.sleep(0.01)  # both wait
        await kept.give_back(first, True)  # handed to ``cancelled``...
        cancelled.cancel()  # ...cancelled before it could run
        assert await asyncio.wait_for(next_one, 1) is first
        assert cancelled.cancelled()
        await kept.give_back(first, True)
        await kept.give_back(second, True)
        assert (kept._open, len(kept._idle)) == (2, 2)

    asyncio.run(handed_on())


def test_a_closed_connection_lets_a_waiting_unit_open_one(pg_database: Database) -> None:
    async def reopened() -> int:
        kept = (await pg_database._engines()).read
        first, second = await kept.take(), await kept.take()
        waiting = asyncio.ensure_future(kept.take())
        await asyncio.sleep(0.01)
        await kept.give_back(first, False)  # not reusable: closed
        opened = await asyncio.wait_for(waiting, 5)
        assert opened is not first
        await kept.give_back(opened, True)
        await kept.give_back(second, True)
        return kept._open

    assert asyncio.run(reopened()) == 2


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_loop_closes_its_connections_as_it_ends(pg_database: Database) -> None:
    """``asyncio.run``'s shutdown closes the loop's connections on that loop, gracefully: none is
    left for the next loop to cut or for the garbage collector."""
    before = _connections(pg_database)
    assert _one_loop(pg_database, 6) == [1] * 6
    assert pg_database._loop_engines == {}
    assert _until(lambda: _connections(pg_database) == before)


def test_connections_of_a_loop_closed_without_shutdown_are_cut_by_the_next(pg_database: Database) -> None:
    before = _connections(pg_database)

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(pg_database.run(_sleep) for _ in range(4))))

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(burst()) == [1] * 4
    finally:
        loop.close()  # no shutdown_asyncgens: its sessions stay open
    assert _connections(pg_database) > before
    assert _one_loop(pg_database, 1) == [1]
    assert _until(lambda: _connections(pg_database) == before)
    assert pg_database._loop_engines == {}


def test_reads_connect_with_the_options_of_the_url(tmp_path: Path) -> None:
    """Request reads connect with asyncpg from the same URL as psycopg: its options reach them."""
    if engine_kind() != "postgresql":
        pytest.skip("asyncpg connections are PostgreSQL's")
    with temporary_database_url(tmp_path) as url:
        database = Database(url + ("&" if "?" in url else "?") + "application_name=fgw-reads", pool_size=4)
        try:

            def both(conn: Connection) -> str:
                return str(conn.execute(text("SELECT current_setting('application_name')")).scalar_one())

            async def read_and_write() -> tuple[str, str]:
                return await database.run(both), await database.run(both, write=True)

            assert asyncio.run(read_and_write()) == ("fgw-reads", "fgw-reads")
        finally:
            database.dispose()
