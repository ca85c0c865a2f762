"""Searches that differ only in a reference value, answered together (``find_reference_matches``,
the chunk lookups of partner imports), find what each search finds alone, for a trusted
caller and through a partner's consent filter."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.fhir.conditional import _request, find_reference_matches, reference_group
from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.search.model import Value
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.search_repository import find_by_tokens, find_ids, find_with_references
from tests.mappings.conftest import put

PERSONS = [f"p{n}" for n in range(1, 8)]


def _team(team_id: str, subject: str, status: str, members: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": team_id,
        "status": status,
        "subject": {"reference": subject},
        "participant": [{"member": {"reference": m}} for m in members],
    }


@pytest.fixture
def teams(database: Database, settings: Settings) -> None:
    for org in ("o1", "o2"):
        put(database, settings, {"resourceType": "Organization", "id": org, "name": org})
    put(database, settings, {"resourceType": "Practitioner", "id": "pr1"})
    for person in PERSONS:
        put(database, settings, {"resourceType": "Patient", "id": person})
    bodies = [
        _team("t1", "Patient/p1", "active", ["Organization/o1"]),
        _team("t2a", "Patient/p2", "active", ["Organization/o1"]),
        _team("t2b", "Patient/p2", "active", ["Organization/o2", "Practitioner/pr1"]),
        _team("t3", "Patient/p3", "inactive", ["Organization/o1"]),
        _team("t4", "Patient/p4", "active", ["Organization/o2"]),  # not visible to o1
        _team("t5", "Group/p5", "active", ["Organization/o1"]),  # same id, another type
        _team("t6", "Patient/p6", "active", ["Organization/o1", "Practitioner/pr1"]),
    ]
    for body in bodies:
        put(database, settings, body)


QUERIES = [
    *(f"subject=Patient/{p}&status=active" for p in PERSONS),
    *(f"subject=Patient/{p}" for p in PERSONS),
    *(f"patient=Patient/{p}&status=inactive" for p in PERSONS),
    "subject=Group/p5&status=active",
    "subject=p5",
    "participant=Practitioner/pr1&status=active",
    "participant=Organization/o1",
    "participant=Organization/o2&status=active",
]

ACCESS = {
    "trusted": AccessContext(
        client_id="t", scopes=parse_scopes("system/*.cruds"), organization="Organization/o1", trusted=True
    ),
    "partner": AccessContext(
        client_id="o1", scopes=parse_scopes("system/*.rs"), organization="Organization/o1"
    ),
}


@pytest.mark.usefixtures("teams")
@pytest.mark.parametrize("who", sorted(ACCESS))
def test_same_answers_as_each_search_alone(database: Database, settings: Settings, who: str) -> None:
    with unit_of_work(database, settings, ACCESS[who], write=False, audit_sink=lambda _e: None) as ctx:
        groups: dict[Any, dict[str, Value]] = {}
        for query in QUERIES:
            shaped = reference_group("CareTeam", query)
            if shaped is not None:
                groups.setdefault(shaped[0], {})[query] = shaped[1]
        assert sum(len(g) for g in groups.values()) == len(QUERIES) - 1  # all but "subject=p5"
        answers = {}
        for group, values in groups.items():
            for query, rows in find_reference_matches(ctx, group, values).items():
                alone = find_ids(ctx.conn, _request("CareTeam", query), ctx, 100)
                assert sorted(r.res_id for r in rows) == sorted(i for _t, i in alone), query
                answers[query] = sorted(r.res_id for r in rows)
        assert len(answers) == len(QUERIES) - 1
        assert answers["subject=Patient/p2&status=active"] == ["t2a", "t2b"]
        assert answers["subject=Patient/p4&status=active"] == ([] if who == "partner" else ["t4"])


@pytest.mark.parametrize(
    "query",
    [
        "subject=p5&status=active",  # no type: the search also matches by URL
        "subject=Patient/p1,Patient/p2",  # several values
        "subject:Patient=p1",  # a modifier
        "subject.name=x",  # a chain
        "subject=Patient/p1&participant=Organization/o1",  # two references
        "status=active",  # no reference
        "subject=Patient/p1&_id=t1",
        "subject=http://elsewhere/Patient/p1",
    ],
)
def test_other_searches_are_left_alone(query: str) -> None:
    assert reference_group("CareTeam", query) is None


@pytest.mark.usefixtures("teams")
def test_values_sought_are_not_left_to_the_garbage_collector(database: Database, settings: Settings) -> None:
    """A bulk import runs with rare garbage collections (``kit.gc_tuning.fewer_collections``):
    a lookup's list of values must be freed when the lookup ends, not kept by a reference cycle
    of the statement it was bound into until a collection comes (memory grew with file size)."""
    sentinel = "value-sought-by-the-garbage-test"
    group, value = reference_group("CareTeam", "subject=Patient/p1&status=active") or pytest.fail("no group")
    gc.collect()
    gc.disable()
    try:
        with unit_of_work(
            database, settings, ACCESS["partner"], write=False, audit_sink=lambda _e: None
        ) as ctx:
            find_reference_matches(ctx, group, {"subject=Patient/p1&status=active": value})
            find_with_references(
                ctx.conn,
                _request("CareTeam", "status=active"),
                "subject",
                "Patient",
                ["p1", sentinel],
                ctx.visible,
            )
            find_by_tokens(ctx.conn, "Patient", "identifier", "urn:system", ["c1", sentinel], ctx.visible)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept = [o for o in gc.garbage if isinstance(o, (list, tuple)) and sentinel in o]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert kept == []
