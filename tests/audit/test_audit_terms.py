"""The gateway's own AuditEvents keep their token values as one row of terms
(``search.audit_terms``); every AuditEvent token search must find exactly what the generic
index finds for the same events (FHIR R4 search.html#token, auditevent.html#search).

The same events are stored twice: through ``audit.store`` (terms) as ``n-<k>`` and through the
generic extraction (``idx_token`` rows) as ``g-<k>``; each search over HTTP must return the
same ``k`` for both, in the same order when sorted by a token parameter.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fhir_gateway.audit import store
from fhir_gateway.audit.events import audit_event_for
from fhir_gateway.audit.store import store_audit_events
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.search.audit_terms import Unfit, terms_of
from fhir_gateway.search.indexing import extract_index_rows
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import audit_terms, idx_token

TOKEN_PARAMS = ("action", "outcome", "type", "subtype", "entity-type", "entity-role", "site", "_tag")


def _events() -> list[dict[str, Any]]:
    """Events of every kind the gateway writes (interactions, outcomes, callers, break-glass)."""
    events = []
    combos = itertools.product(
        ["read", "search-type", "create", "update", "delete", "notify", "operation", "transaction"],
        [("Task", "t1", "p1"), ("Patient", "p2", "p2"), ("Organization", "o1", None), (None, None, None)],
        [True, False],
    )
    for n, (interaction, (res_type, res_id, person), ok) in enumerate(combos):
        access = AccessContext(
            f"client-{n % 3}",
            (),
            organization="Organization/saad-1" if n % 2 else None,
            break_glass="urgence vitale" if n % 7 == 0 else None,
            purpose=["COC", "TREAT"][n % 2],
        )
        decided = [None, "Consent/c-1", "trusted client"][n % 3]
        query = "patient=Patient/p1&status=requested" if interaction == "search-type" else None
        events.append(
            audit_event_for(access, interaction, res_type, res_id, person, ok, decided, query, outcome=None)
        )
    return events


@pytest.fixture
def stored_twice(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    events = _events()
    with database.transaction(write=True) as conn:
        store_audit_events(conn, [{**e, "id": f"n-{k}"} for k, e in enumerate(events)])
    with monkeypatch.context() as patched:
        patched.setattr(store, "audit_index_rows", lambda _body, **_: None)  # the generic way
        with database.transaction(write=True) as conn:
            store_audit_events(conn, [{**e, "id": f"g-{k}"} for k, e in enumerate(events)])
    with database.transaction() as conn:
        with_terms = select(func.count()).where(audit_terms.c.terms != "[]")  # on PostgreSQL every event
        assert conn.execute(with_terms).scalar_one() == len(events)  # has a row (``storage.audit_refs``)
        narrow = select(func.count()).where(idx_token.c.res_id.like("n-%"))
        assert conn.execute(narrow).scalar_one() == 0  # none of their tokens in the index
    return events


def _found(fhir: TestClient, params: dict[str, str]) -> tuple[list[int], list[int]]:
    response = fhir.get("/fhir/AuditEvent", params={"_count": "1000", **params})
    assert response.status_code == 200, (params, response.text)
    ids = [e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"]
    narrow = [int(i[2:]) for i in ids if i.startswith("n-")]
    generic = [int(i[2:]) for i in ids if i.startswith("g-")]
    return narrow, generic


def _criteria(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every form of token criterion on every token parameter, with values the events hold."""
    rows = [row for e in events for row in extract_index_rows(e).get("token", [])]
    criteria: list[dict[str, str]] = []
    for param in TOKEN_PARAMS:
        mine = [r for r in rows if r["param"] == param]
        codes = sorted({r["code"] for r in mine if r["code"]})
        systems = sorted({r["system"] for r in mine if r["system"]})
        words = sorted({r["display"].split()[0] for r in mine if r.get("display")})
        criteria += [{param: "unknown-code"}, {f"{param}:missing": "true"}, {f"{param}:missing": "false"}]
        for code in codes[:4]:
            criteria += [{param: code}, {f"{param}:not": code}, {param: f"|{code}"}]
        if len(codes) > 1:
            criteria.append({param: f"{codes[0]},{codes[-1]}"})
        for system in systems[:2]:
            criteria += [{param: f"{system}|"}, {param: f"{system}|{codes[0]}" if codes else f"{system}|x"}]
        criteria += [{f"{param}:text": word} for word in words[:2]]
        criteria += [{"_sort": param}, {"_sort": f"-{param}"}]
    return criteria


def test_token_searches_find_the_same_events_either_way(
    fhir: TestClient, stored_twice: list[dict[str, Any]]
) -> None:
    matched = 0
    for criterion in _criteria(stored_twice):
        narrow, generic = _found(fhir, criterion)
        if "_sort" in criterion:
            assert narrow == generic, criterion  # the same order
        else:
            assert sorted(narrow) == sorted(generic), criterion
        matched += bool(narrow) and len(narrow) < len(stored_twice)
    assert matched > 40  # the criteria do tell events apart


def test_several_criteria_and_a_person(fhir: TestClient, stored_twice: list[dict[str, Any]]) -> None:
    for params in (
        {"patient": "Patient/p1", "subtype": "read"},
        {"subtype": "create,update", "outcome": "0", "entity-type": "2"},
        {"subtype:not": "read", "action": "R"},
    ):
        narrow, generic = _found(fhir, params)
        assert sorted(narrow) == sorted(generic), params


def test_a_value_holding_a_separator_is_left_to_the_index() -> None:
    with pytest.raises(Unfit):
        terms_of([{"param": "subtype", "system": "urn:x", "code": "a\x1eb", "display": None}])
    access = AccessContext("client-1", (), organization="Organization/o1")
    event = audit_event_for(access, "read", "Task", "t1", "p1", True, None, None)
    event["subtype"][0]["code"] = "re\x1fad"
    prepared = store.prepare_audit_events([event])
    tables = {table.name for table, _rows in prepared.parts}
    assert "audit_terms" not in tables
    assert "idx_token" in tables
