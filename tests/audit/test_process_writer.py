"""The audit trail written by a process of its own (audit.process_writer, audit.sidecar).

Nothing of the trail may be lost or doubled: every event a request hands over is stored once,
when the server stops too, and when the writer process is killed and replaced.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.audit.events import audit_event_for
from fhir_gateway.audit.process_writer import AuditProcessWriter
from fhir_gateway.audit.sidecar import serve
from fhir_gateway.audit.writer import AuditWriter
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.kit.ids import new_id
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from tests.support.auth import issue_token, register_client


def _stored_ids(database: Database, kind: str = "search-type") -> list[str]:
    with database.transaction() as conn:
        rows = conn.execute(
            text("SELECT res_id FROM resource WHERE res_type = 'AuditEvent' AND content LIKE :kind"),
            {"kind": f"%{kind}%"},
        )
        return [row[0] for row in rows]


def _app(settings: Settings, database: Database, flush_seconds: float) -> FastAPI:
    return create_app(
        settings.model_copy(update={"audit_mode": "process", "audit_flush_seconds": flush_seconds}), database
    )


def _searches(client: TestClient, database: Database, count: int) -> None:
    if "Authorization" not in client.headers:
        client_id, secret = register_client(database, f"c{new_id()[:8]}", "system/*.cruds", trusted=True)
        client.headers["Authorization"] = f"Bearer {issue_token(client, client_id, secret)}"
    for _ in range(count):
        assert client.get("/fhir/Patient", params={"_id": "x"}).status_code == 200


def _writer_pid(app: FastAPI) -> int:
    process = app.state.audit_writer._process
    assert process is not None
    return int(process.pid)


def test_every_event_is_stored_by_the_writer_process(settings: Settings, database: Database) -> None:
    app = _app(settings, database, 0.05)
    with TestClient(app) as client:
        assert type(app.state.audit_writer) is AuditProcessWriter
        pid = _writer_pid(app)
        assert pid != os.getpid()
        _searches(client, database, 4)
        client.portal.call(app.state.audit_writer.drain)  # type: ignore[union-attr]
        assert len(_stored_ids(database)) == 4
        assert app.state.audit_writer.pending() == 0
    assert app.state.audit_writer._process.returncode == 0


def test_what_is_left_is_stored_when_the_server_stops(settings: Settings, database: Database) -> None:
    app = _app(settings, database, 60)  # the writer process would wait a minute to write
    with TestClient(app) as client:
        _searches(client, database, 3)
        assert app.state.audit_writer.pending() == 3
        time.sleep(0.1)
        assert _stored_ids(database) == []
    assert len(_stored_ids(database)) == 3
    assert app.state.audit_writer._process.returncode == 0


def _kill_writer_holding_three(app: FastAPI, client: TestClient, database: Database) -> int:
    """Three searches' events sent to the writer process (which holds them for a minute),
    then that process killed; its pid."""
    _searches(client, database, 3)
    time.sleep(0.1)
    pid = _writer_pid(app)
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_writer_process_is_replaced_and_nothing_is_lost_or_doubled(
    settings: Settings, database: Database
) -> None:
    app = _app(settings, database, 60)
    with TestClient(app) as client:
        first = _kill_writer_holding_three(app, client, database)
        _searches(client, database, 2)
        client.portal.call(app.state.audit_writer.drain)  # type: ignore[union-attr]
        assert _writer_pid(app) != first
        ids = _stored_ids(database)
    assert len(ids) == 5
    assert len(set(ids)) == 5


def test_a_writer_process_killed_as_the_server_stops_is_replaced_to_store_what_it_held(
    settings: Settings, database: Database
) -> None:
    app = _app(settings, database, 60)
    with TestClient(app) as client:
        _kill_writer_holding_three(app, client, database)
    ids = _stored_ids(database)
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert app.state.audit_writer._process.returncode == 0


def test_the_writer_process_outlives_the_signals_sent_to_the_whole_group(
    settings: Settings, database: Database
) -> None:
    """Ctrl-C in a terminal (SIGINT), a service manager's stop (SIGTERM): the server closes its
    input when it stops; until then the writer process keeps what it holds."""
    app = _app(settings, database, 60)
    # started with SIGINT ignored (as from a background shell job), the child would inherit that
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pid = _survive_signals(app, database)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(_stored_ids(database)) == 2
    assert app.state.audit_writer._process.pid == pid  # the same process stored them, not a replacement
    assert app.state.audit_writer._process.returncode == 0


def _survive_signals(app: FastAPI, database: Database) -> int:
    with TestClient(app) as client:
        client.portal.call(app.state.audit_writer.drain)  # type: ignore[union-attr]  # it answers: running
        _searches(client, database, 2)
        time.sleep(0.1)
        pid = _writer_pid(app)
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        assert _running(pid)
        assert _writer_pid(app) == pid
    return pid


def _running(pid: int) -> bool:
    """``pid`` is alive (not even a zombie waiting for its parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_written_from_the_server_process(settings: Settings, url: str) -> None:
    """Another process cannot open an in-memory SQLite database: the events stay in this one."""
    memory = Database(url, pool_size=1)
    app = create_app(settings.model_copy(update={"audit_mode": "process", "database_url": url}), memory)
    assert type(app.state.audit_writer) is AuditWriter
    memory.dispose()


def _event(n: int) -> dict[str, object]:
    caller = AccessContext(
        client_id="audit-test",
        scopes=parse_scopes("system/*.rs"),
        trusted=True,
        raw_scope="system/*.rs",
        verify_client=False,
    )
    event = audit_event_for(caller, "read", "Patient", f"p{n}", f"p{n}", True, "trusted client", None)
    return {**event, "id": new_id()}


def _lines(*frames: tuple[str, int, list[dict[str, object]] | None]) -> io.BytesIO:
    out = b""
    for kind, seq, events in frames:
        out += kind.encode() + str(seq).encode()
        out += (b" " + orjson.dumps(events) if events is not None else b"") + b"\n"
    return io.BytesIO(out)


def test_a_frame_sent_again_stores_only_the_events_not_yet_stored(database: Database) -> None:
    """A writer process killed after its commit, before its answer: its events come again ("R")."""
    a, b, c = _event(1), _event(2), _event(3)
    answers = io.BytesIO()
    serve(database, _lines(("E", 1, [a, b])), answers, interval=0.01)
    assert answers.getvalue() == b"1\n"
    answers = io.BytesIO()
    serve(database, _lines(("R", 1, [a, b]), ("E", 2, [c]), ("F", 3, None)), answers, interval=60)
    assert answers.getvalue() == b"3\n"
    ids = _stored_ids(database, "read")
    assert sorted(ids) == sorted(str(e["id"]) for e in (a, b, c))


def test_a_line_that_is_no_frame_is_refused_and_the_others_stored(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    a = _event(1)
    source = io.BytesIO(b"E1 {not json\n" + b"X2\n" + b'E4 [{"resourceType":"AuditEvent"}]\n')
    source = io.BytesIO(source.getvalue() + _lines(("E", 3, [a])).getvalue())
    answers = io.BytesIO()
    serve(database, source, answers, interval=60)
    assert answers.getvalue() == b"3\n"
    assert _stored_ids(database, "read") == [a["id"]]
    assert [r.message for r in caplog.records].count("audit_frame_refused") == 3


def test_an_event_the_index_cannot_hold_is_dropped_alone_the_others_stored(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad event (a subtype system longer than the index holds) must not hold the trail back."""
    good = [_event(1), _event(2), _event(3)]
    bad = {**_event(4), "subtype": [{"system": "s" * 600, "code": "read"}]}
    answers = io.BytesIO()
    serve(database, _lines(("E", 1, [good[0], bad]), ("E", 2, good[1:])), answers, interval=60)
    assert answers.getvalue() == b"2\n"
    assert sorted(_stored_ids(database, "read")) == sorted(str(e["id"]) for e in good)
    refused = [r for r in caplog.records if r.message == "audit_event_refused"]
    assert [r.audit_event_id for r in refused] == [bad["id"]]  # type: ignore[attr-defined]


def test_an_event_the_database_refuses_is_dropped_alone_the_others_stored(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite does not bound text lengths")
    good = _event(1)
    bad = {**_event(2), "id": "x" * 80}  # longer than the resource id column
    answers = io.BytesIO()
    serve(database, _lines(("E", 1, [bad, good])), answers, interval=60)
    assert answers.getvalue() == b"1\n"
    assert _stored_ids(database, "read") == [good["id"]]
    refused = [r for r in caplog.records if r.message == "audit_event_refused"]
    assert [r.error for r in refused] == ["DataError"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["event loop", "thread"])
def test_the_in_process_writer_also_drops_a_bad_event_alone(
    database: Database, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """``FHIR_GATEWAY_AUDIT_MODE=batched``: the same rule (audit.batch_store), both of its paths."""
    good = _event(1)
    bad = {**_event(2), "subtype": [{"system": "s" * 600, "code": "read"}]}
    writer = AuditWriter(database, interval=3600)
    if path == "thread":
        writer.submit([good, bad])
        writer.flush()
        writer.close()
    else:

        async def run() -> None:
            await writer.start()
            writer.submit([good, bad])
            await writer.drain()
            assert writer.pending() == 0  # written by the loop's own path, not by ``close``
            await writer.aclose()

        asyncio.run(run())
    assert writer.pending() == 0
    assert _stored_ids(database, "read") == [good["id"]]
    assert [r.audit_event_id for r in caplog.records if r.message == "audit_event_refused"] == [bad["id"]]  # type: ignore[attr-defined]


def test_a_refused_write_is_kept_and_stored_once_the_database_takes_it(tmp_path: Path) -> None:
    """The database refuses (here: its tables do not exist yet); nothing is answered nor lost."""
    database = Database(f"sqlite:///{tmp_path / 'late.db'}", pool_size=1)
    read_end, write_end = os.pipe()
    answers = io.BytesIO()
    source, sink = os.fdopen(read_end, "rb"), os.fdopen(write_end, "wb")
    writer = threading.Thread(target=serve, args=(database, source, answers, 0.02))
    writer.start()
    try:
        event = _event(1)
        sink.write(_lines(("E", 1, [event])).getvalue())
        sink.flush()
        time.sleep(0.3)
        assert answers.getvalue() == b""
        upgrade(database)
        sink.write(b"F2\n")
        sink.flush()
        deadline = time.monotonic() + 10
        while answers.getvalue() != b"2\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answers.getvalue() == b"2\n"
        assert _stored_ids(database, "read") == [event["id"]]
    finally:
        sink.close()
        writer.join(timeout=10)
        database.dispose()
