"""Paging cursors bound to the client that got them (issue 11), through HTTP.

Every paging link (search, history, ``$everything``, worklists) replays its query with a
``_cursor`` (``kit.cursor``): the client that ran the query walks every page; another client
gets a 403 that echoes nothing of the query; an altered cursor, or one moved to another
query, is a 400 naming ``_cursor``; an expired one a 410; a client's ``_offset`` is ignored
with a warning (400 under ``Prefer: handling=strict``; always 400 on a history).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.fhir import cursors
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.conftest import ClientFactory
from tests.consent.support import day
from tests.operations.support import SAAD, TASK_CODES, ids, permit, person, put
from tests.support.auth import issue_token, register_client
from tests.support.pages import walk

STRICT = {"Prefer": "handling=strict"}


def _link(bundle: dict[str, Any], relation: str) -> str:
    url = next(x["url"] for x in bundle["link"] if x["relation"] == relation)
    return str(url).replace("http://testserver", "")


def _with_cursor(link: str, change: Any) -> str:
    """``link`` with its query pairs passed through ``change``."""
    parts = urlsplit(link)
    return f"{parts.path}?{urlencode(change(parse_qsl(parts.query)))}"


def _cursor(link: str) -> str:
    return dict(parse_qsl(urlsplit(link).query))["_cursor"]


def _payload(link: str) -> dict[str, Any]:
    part = _cursor(link).split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _entries(bundle: dict[str, Any]) -> list[str]:
    """The page's matches (searchset) or versions (history), in order."""
    return [
        e["fullUrl"] + e.get("response", {}).get("etag", "")
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def _walk(client: TestClient, url: str) -> tuple[list[str], set[Any]]:
    """Follow ``next`` links from ``url``: every entry and the totals seen."""
    return walk(client, url, _entries)


def _records(fhir: TestClient) -> None:
    """Seven people with two SAAD Tasks each, one overdue; p0 changed three times; alerts."""
    for k in range(7):
        person(fhir, f"p{k}", tasks=2)
    for version in range(3):
        put(fhir, {"resourceType": "Patient", "id": "p0", "name": [{"family": f"Nom-p0-{version}"}]})
    alert = {"coding": [{"system": TASK_CODES, "code": "alerte-vigilance"}]}
    for k in range(5):
        put(
            fhir,
            {"resourceType": "Task", "id": f"alert{k}", "status": "requested", "intent": "order",
             "code": alert, "for": {"reference": "Patient/p0"}, "owner": {"reference": SAAD},
             "restriction": {"period": {"end": day(-3)}}},
        )  # fmt: skip


PAGED = [
    "/fhir/Patient?_count=3&_sort=_id&_total=accurate",
    "/fhir/Task?_count=4&owner=Organization/saad&_total=accurate",
    "/fhir/Patient/_history?_count=4",
    "/fhir/Patient/p0/_history?_count=1",
    "/fhir/Patient/p0/$everything?_count=2",
    "/fhir/Task/$late?owner=Organization/saad&_count=2",
    "/fhir/Task/$open-alerts?_count=2&_total=accurate",
]


@pytest.mark.parametrize("start", PAGED)
def test_a_client_walks_every_page_of_its_own_links(fhir: TestClient, start: str) -> None:
    _records(fhir)
    whole = fhir.get(re.sub(r"_count=\d+", "_count=1000", start)).json()
    pages, totals = _walk(fhir, start)
    assert totals == {whole["total"]}
    assert len(pages) == whole["total"] > 2
    assert pages == _entries(whole)
    first = fhir.get(start).json()
    assert "_offset" not in json.dumps(first["link"])
    assert {x["relation"] for x in first["link"]} >= {"self", "first", "next", "last"}
    last = fhir.get(_link(first, "last")).json()
    assert "next" not in {x["relation"] for x in last["link"]}
    second = fhir.get(_link(first, "next")).json()
    back = fhir.get(_link(second, "previous")).json()
    assert back["entry"] == first["entry"]
    # the first page's links are the query alone (its position needs no cursor); others have one
    for page in (first, second, last):
        assert "_cursor" not in _link(page, "first")
        assert fhir.get(_link(page, "first")).json()["entry"] == first["entry"]
    assert "_cursor" not in _link(first, "self")
    assert all("_cursor" in _link(page, "self") for page in (second, last))
    assert "_cursor" in _link(first, "next")


def test_history_links_walk_every_version(fhir: TestClient) -> None:
    _records(fhir)
    versions, totals = _walk(fhir, "/fhir/Patient/p0/_history?_count=1")
    assert totals == {4}
    assert [v.rsplit("W/", 1)[1] for v in versions] == ['"4"', '"3"', '"2"', '"1"']


def test_a_post_search_pages_with_get_links(fhir: TestClient) -> None:
    _records(fhir)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    first = fhir.post(
        "/fhir/Patient/_search", content="_count=3&_sort=_id&_total=accurate", headers=form
    ).json()
    pages, totals = _walk(fhir, _link(first, "next"))
    assert totals == {7}
    assert _entries(first) + pages == [f"http://testserver/fhir/Patient/p{k}" for k in range(7)]


@pytest.mark.parametrize("start", PAGED)
def test_another_clients_cursor_is_refused_and_nothing_of_the_query_is_echoed(
    fhir: TestClient, make_client: ClientFactory, start: str
) -> None:
    _records(fhir)
    other = make_client("system/*.cruds", trusted=True)  # the very same rights: still refused
    link = _link(fhir.get(start).json(), "next")
    refused = other.get(link)
    assert refused.status_code == 403, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == ["forbidden"]
    assert "issued to another client" in outcome["issue"][0]["diagnostics"]
    for echoed in ("saad", "owner", "p0", "_count", "Patient", "history", "everything", _cursor(link)):
        assert echoed not in refused.text
    assert fhir.get(link).status_code == 200


def test_a_partner_cannot_replay_a_trusted_clients_link(fhir: TestClient, make_client: ClientFactory) -> None:
    person(fhir, "p1", tasks=3)
    permit(fhir, "p1", SAAD, "c1")
    partner = make_client("system/*.rs", organization=SAAD)
    link = _link(partner.get("/fhir/Task", params={"_count": "1", "_total": "accurate"}).json(), "next")
    assert fhir.get(link).status_code == 403  # binding holds both ways
    assert partner.get(link).json()["total"] == 3


def test_altered_cursors_and_cursors_moved_to_another_query_are_400(fhir: TestClient) -> None:
    _records(fhir)
    link = _link(fhir.get("/fhir/Patient", params={"_count": "2", "_sort": "_id"}).json(), "next")
    cursor = _cursor(link)
    payload, signature = cursor.split(".")
    decoded = _payload(link)
    assert set(decoded) == {"v", "c", "q", "o", "t"}  # the documented payload
    forged = base64.urlsafe_b64encode(json.dumps({**decoded, "o": 4}).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    altered = {
        "forged offset": f"{forged}.{signature}",
        "flipped signature": f"{payload}.{flipped}",
        "truncated": cursor[:-5],
        "no signature": payload,
        "garbage": "%%%.***",
        "empty parts": ".",
    }
    for name, value in altered.items():
        answer = fhir.get(
            _with_cursor(link, lambda q, v=value: [(k, v if k == "_cursor" else x) for k, x in q])
        )
        assert answer.status_code == 400, (name, answer.text)
        issue = answer.json()["issue"][0]
        assert issue["expression"] == ["_cursor"], name
        assert "malformed or was altered" in issue["diagnostics"], name
    moved = {
        "criterion added": lambda q: [*q, ("gender", "female")],
        "sort changed": lambda q: [(k, "-_id" if k == "_sort" else v) for k, v in q],
        "sort dropped": lambda q: [(k, v) for k, v in q if k != "_sort"],
    }
    for name, change in moved.items():
        answer = fhir.get(_with_cursor(link, change))
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["issue"][0]["expression"] == ["_cursor"]
        assert "another query" in answer.json()["issue"][0]["diagnostics"]
    elsewhere = [
        f"/fhir/Task?_sort=_id&_count=2&_cursor={cursor}",  # another type
        f"/fhir/Patient/_history?_sort=_id&_count=2&_cursor={cursor}",  # a history
        f"/fhir/Patient/p0/$everything?_sort=_id&_count=2&_cursor={cursor}",
    ]
    for url in elsewhere:
        answer = fhir.get(url)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["issue"][0]["expression"] == ["_cursor"]
    resized = fhir.get(_with_cursor(link, lambda q: [(k, "5" if k == "_count" else v) for k, v in q])).json()
    assert ids(resized) == [f"Patient/p{k}" for k in range(2, 7)]  # a page size may change


def test_an_expired_cursor_is_410(fhir: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    _records(fhir)
    link = _link(fhir.get("/fhir/Patient", params={"_count": "2"}).json(), "next")
    ttl = Settings().paging_cursor_ttl_seconds
    assert ttl == 3600
    issued = _payload(link)["t"]
    monkeypatch.setattr(cursors, "_now", lambda: issued + ttl)
    assert fhir.get(link).status_code == 200  # valid to its last second
    monkeypatch.setattr(cursors, "_now", lambda: issued + ttl + 2)
    expired = fhir.get(link)
    assert expired.status_code == 410
    issue = expired.json()["issue"][0]
    assert issue["code"] == "expired"
    assert issue["expression"] == ["_cursor"]
    assert "expired" in issue["diagnostics"]
    assert "run the search again" in issue["diagnostics"]


def test_the_cursor_lifetime_is_a_setting(settings: Settings, database: Database) -> None:
    short = settings.model_copy(update={"paging_cursor_ttl_seconds": 60})
    client_id, secret = register_client(database, "short", "system/*.cruds", trusted=True)
    with TestClient(create_app(short, database)) as client:
        client.headers["Authorization"] = f"Bearer {issue_token(client, client_id, secret)}"
        for k in range(3):
            put(client, {"resourceType": "Patient", "id": f"s{k}"})
        link = _link(client.get("/fhir/Patient", params={"_count": "1"}).json(), "next")
        issued = _payload(link)["t"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cursors, "_now", lambda: issued + 62)
            assert client.get(link).status_code == 410
            assert "valid 60 s" in client.get(link).json()["issue"][0]["diagnostics"]


def test_offset_from_a_client_follows_the_unknown_parameter_rules(fhir: TestClient) -> None:
    _records(fhir)
    lenient = fhir.get("/fhir/Patient", params={"_count": "2", "_sort": "_id", "_offset": "4"})
    assert lenient.status_code == 200
    bundle = lenient.json()
    assert ids(bundle) == ["Patient/p0", "Patient/p1"]  # ignored: the first page
    [outcome] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert outcome["issue"][0]["expression"] == ["_offset"]
    assert "next/previous links" in outcome["issue"][0]["diagnostics"]
    assert "_offset" not in json.dumps(bundle["link"])
    strict = fhir.get("/fhir/Patient", params={"_offset": "4"}, headers=STRICT)
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["_offset"]
    for operation in ("/fhir/Patient/p0/$everything", "/fhir/Task/$late?owner=Organization/saad",
                      "/fhir/Task/$open-alerts", "/fhir/Patient/$follow-up-gaps"):  # fmt: skip
        separator = "&" if "?" in operation else "?"
        answer = fhir.get(f"{operation}{separator}_offset=2")
        assert answer.status_code == 200, (operation, answer.text)
        warnings = [e for e in answer.json()["entry"] if e["search"]["mode"] == "outcome"]
        assert warnings[0]["resource"]["issue"][0]["expression"] == ["_offset"], operation
        refused = fhir.get(f"{operation}{separator}_offset=2", headers=STRICT)
        assert refused.status_code == 400, operation
        assert refused.json()["issue"][0]["expression"] == ["_offset"]
    for history in ("/fhir/_history", "/fhir/Patient/_history", "/fhir/Patient/p0/_history"):
        refused = fhir.get(history, params={"_offset": "1"})  # a history Bundle has no room for a warning
        assert refused.status_code == 400, history
        assert refused.json()["issue"][0]["expression"] == ["_offset"]


def test_a_cursor_is_good_on_every_replica(settings: Settings, database: Database) -> None:
    """Replicas share the key through the database: a link issued by one is followed on another,
    even when the first replica had to create the key."""
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM server_secret"))
    client_id, secret = register_client(database, "replicated", "system/*.cruds", trusted=True)
    first, second = create_app(settings, database), create_app(settings, database)
    with TestClient(first) as one, TestClient(second) as two:
        token = issue_token(one, client_id, secret)
        for client in (one, two):
            client.headers["Authorization"] = f"Bearer {token}"
        for k in range(5):
            put(one, {"resourceType": "Patient", "id": f"r{k}"})
        link = _link(one.get("/fhir/Patient", params={"_count": "2", "_sort": "_id"}).json(), "next")
        assert ids(two.get(link).json()) == ["Patient/r2", "Patient/r3"]
        back = _link(two.get(link).json(), "previous")
        assert ids(one.get(back).json()) == ["Patient/r0", "Patient/r1"]
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM server_secret")).scalar() == 1


def test_the_capability_statement_says_how_paging_works(http: TestClient) -> None:
    from fhir.resources.capabilitystatement import CapabilityStatement

    statement = http.get("/fhir/metadata").json()
    CapabilityStatement.model_validate(statement)
    documentation = statement["rest"][0]["documentation"]
    for words in (
        "`_cursor`",
        "another client gets 403",
        "older than 3600 s 410",
        "`_offset` is not accepted",
    ):
        assert words in documentation
