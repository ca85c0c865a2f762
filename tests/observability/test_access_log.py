"""The access log's lines reach ``logging`` a batch at a time (``observability.access_log``):
all of them, in order, dated when their request ended, at most ``FLUSH_SECONDS`` late while
the server runs, and all when it stops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from fhir_gateway.observability import access_log
from fhir_gateway.observability.access_log import ACCESS_LOG, BATCH, FLUSH_SECONDS


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "fhir_gateway.access":
            self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    ACCESS_LOG.flush()  # lines of earlier tests
    handler = _Records()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_lines_arrive_while_the_server_runs_in_order_and_dated(app: FastAPI, records: _Records) -> None:
    with TestClient(app) as http:
        ended = []
        for _ in range(3):
            response = http.get("/health/live")
            ended.append((time.time(), response.headers["x-request-id"]))
        deadline = time.monotonic() + 20 * FLUSH_SECONDS
        while len(records.records) < 3 and time.monotonic() < deadline:
            time.sleep(FLUSH_SECONDS / 4)
        assert [r.request_id for r in records.records] == [rid for _, rid in ended]  # type: ignore[attr-defined]
        for record, (after, _) in zip(records.records, ended, strict=True):
            assert after - 1 < record.created <= after  # when the request ended, not when emitted
            assert record.status == 200  # type: ignore[attr-defined]


def test_a_full_batch_is_emitted_at_once(records: _Records, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_log, "FLUSH_SECONDS", 3600.0)

    async def requests_end() -> None:
        for n in range(BATCH - 1):
            ACCESS_LOG.add({"request_id": str(n)})
        assert records.records == []  # waiting for the batch or the timer
        ACCESS_LOG.add({"request_id": "full"})
        assert len(records.records) == BATCH

    asyncio.run(requests_end())
    assert [r.request_id for r in records.records] == [*map(str, range(BATCH - 1)), "full"]  # type: ignore[attr-defined]


def test_what_waits_is_emitted_when_the_application_stops(
    app: FastAPI, records: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "FLUSH_SECONDS", 3600.0)
    with TestClient(app) as http:
        ids = [http.get("/health/live").headers["x-request-id"] for _ in range(5)]
        assert records.records == []
    assert [r.request_id for r in records.records] == ids  # type: ignore[attr-defined]
