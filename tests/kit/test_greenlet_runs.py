"""Greenlets kept for reuse (fhir_gateway/kit/greenlet_runs.py): what SQLAlchemy's
``greenlet_spawn`` does (results, errors, awaits handed to the loop, the caller's context),
without a new greenlet per run, and nothing of a run kept while idle."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest
from greenlet import getcurrent
from sqlalchemy.util import await_only

from fhir_gateway.kit.greenlet_runs import run_in_greenlet

REQUEST = contextvars.ContextVar("request", default="none")


async def _later(value: Any, seconds: float = 0.0) -> Any:
    await asyncio.sleep(seconds)
    return value


def _twice(value: int) -> tuple[int, int, Any]:
    first = await_only(_later(value))
    second = await_only(_later(value + 1))
    return first, second, getcurrent()


def test_results_awaits_and_one_greenlet_reused() -> None:
    async def main() -> list[Any]:
        return [await run_in_greenlet(_twice, n) for n in (1, 10, 100)]

    runs = asyncio.run(main())
    assert [run[:2] for run in runs] == [(1, 2), (10, 11), (100, 101)]
    assert runs[0][2] is runs[1][2] is runs[2][2]  # one greenlet, taken back each time
    assert runs[0][2] is not getcurrent()


def test_concurrent_runs_each_have_their_greenlet_and_their_context() -> None:
    def work(label: str) -> tuple[str, str, Any]:
        await_only(_later(None, 0.01))  # the other run goes on meanwhile
        return label, REQUEST.get(), getcurrent()

    async def one(label: str) -> tuple[str, str, Any]:
        REQUEST.set(label)
        return await run_in_greenlet(work, label)

    async def main() -> list[tuple[str, str, Any]]:
        return list(await asyncio.gather(*(one(f"r{i}") for i in range(5))))

    runs = asyncio.run(main())
    assert [(label, seen) for label, seen, _ in runs] == [(f"r{i}", f"r{i}") for i in range(5)]
    assert len({id(runner) for _, _, runner in runs}) == 5


def test_errors_reach_the_caller_and_leave_the_greenlet_usable() -> None:
    class Refused(Exception):
        pass

    def failing() -> None:
        await_only(_later(None))
        raise Refused("no")

    def awaited_failure() -> None:
        await_only(_failing_coroutine())

    async def _failing_coroutine() -> None:
        raise KeyError("inside the awaitable")

    async def main() -> tuple[Any, Any]:
        with pytest.raises(Refused, match="no"):
            await run_in_greenlet(failing)
        with pytest.raises(KeyError, match="inside the awaitable"):  # thrown into the function
            await run_in_greenlet(awaited_failure)
        return await run_in_greenlet(_twice, 5)

    assert asyncio.run(main())[:2] == (5, 6)


def test_a_cancelled_caller_cancels_the_function() -> None:
    seen: list[str] = []

    def waiting() -> None:
        try:
            await_only(_later(None, 10))
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def main() -> tuple[Any, ...]:
        task = asyncio.ensure_future(run_in_greenlet(waiting))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await run_in_greenlet(_twice, 7)

    assert asyncio.run(main())[:2] == (7, 8)
    assert seen == ["cancelled inside"]


def test_an_idle_greenlet_keeps_nothing_of_its_last_run() -> None:
    class Payload:
        pass

    def returning(box: list[weakref.ref[Payload]]) -> Payload:
        payload = Payload()
        box.append(weakref.ref(payload))
        return payload

    def raising(box: list[weakref.ref[Payload]]) -> None:
        payload = Payload()
        box.append(weakref.ref(payload))
        raise ValueError(payload)

    async def main() -> list[Any]:
        box: list[weakref.ref[Payload]] = []
        await run_in_greenlet(returning, box)
        gc.collect()
        after_return = box[-1]()
        with pytest.raises(ValueError):  # noqa: PT011  # its argument is the payload
            await run_in_greenlet(raising, box)
        gc.collect()
        after_raise = box[-1]()
        argument = Payload()
        box.append(weakref.ref(argument))
        await run_in_greenlet(lambda _argument: None, argument)
        del argument
        gc.collect()
        return [after_return, after_raise, box[-1]()]

    assert asyncio.run(main()) == [None, None, None]  # while the greenlet waits for its next run
