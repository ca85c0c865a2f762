"""Hypothesis through HTTP on the real database (issue 11): searches and Bundles built from
FHIR-aware pieces (prefixes, modifiers, chains, ``_has``, calendar edges; entries with any
method, URL and body) go all the way to SQL. No 5xx, every error an OperationOutcome with no
SQL text, and a refused transaction leaves nothing behind.

``tests/search/test_parser_fuzz.py`` fuzzes the parser and the Bundle reader alone, faster
and with more examples; schemathesis covers every operation with schema-shaped requests.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.search.test_parser_fuzz import JSON, NAMES

FHIR = "application/fhir+json"
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EDGES = [
    *("9999-12-31", "0001-01-01", "ge9999-12-31T23:59:59-14:00", "le0001-01-01T00:00:00+14:00"),
    *("ap9999", "sa0001", "eb9999-12", "2026-02-30", "9" * 30, "1e999", "-0"),
    *("Patient/", "/", "|", "\\", "a,b,"),
]
URLS = [
    *("Patient", "Patient/p", "Task?status=requested", "Patient/x/_history/1", "", "/", "metadata"),
    *("Patient?birthdate=9999-12-31", "urn:uuid:a"),
]
VALUES = st.one_of(st.text(max_size=30), st.sampled_from(EDGES))


def _clean(response: Any) -> None:
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome", response.text[:300]
    for word in ("SELECT", "INSERT", "Traceback", "sqlalchemy", "psycopg"):
        assert word not in response.text


def _world(fhir: TestClient) -> None:
    if fhir.get("/fhir/Patient/p").status_code == 200:
        return
    bodies = [
        {"resourceType": "Patient", "id": "p", "birthDate": "1940-05-01", "name": [{"family": "Martin"}]},
        {"resourceType": "Task", "id": "t", "status": "requested", "intent": "order",
         "for": {"reference": "Patient/p"}, "authoredOn": "2026-01-01T10:00:00+01:00"},
        {"resourceType": "CarePlan", "id": "c", "status": "active", "intent": "plan",
         "subject": {"reference": "Patient/p"}},
    ]  # fmt: skip
    for body in bodies:
        answer = fhir.put(
            f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers={"Content-Type": FHIR}
        )
        assert answer.status_code in (200, 201), answer.text


@SETTINGS
@given(
    res_type=st.sampled_from(["Task", "Patient", "CarePlan", "AuditEvent"]),
    items=st.lists(
        st.tuples(st.one_of(NAMES, st.sampled_from(["birthdate", "_lastUpdated"])), VALUES), max_size=5
    ),
    post=st.booleans(),
)
def test_hostile_searches_reach_sql_without_a_5xx(
    fhir: TestClient, res_type: str, items: list[tuple[str, str]], post: bool
) -> None:
    _world(fhir)
    if post:
        answer = fhir.post(f"/fhir/{res_type}/_search", data=dict(items))
    else:
        answer = fhir.get(f"/fhir/{res_type}", params=items)
    _clean(answer)


def _entry(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get", ""]))
    url = draw(st.one_of(st.sampled_from(URLS), st.text(max_size=15)))
    resource = draw(
        st.one_of(
            st.just({"resourceType": "Patient", "birthDate": "9999-12-31"}),
            st.just(
                {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "for": {"reference": "urn:uuid:a"},
                }
            ),  # fmt: skip
            st.dictionaries(st.sampled_from(["resourceType", "id", "status", "name"]), JSON, max_size=3),
            st.none(),
        )
    )
    entry: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        entry["resource"] = resource
    if draw(st.booleans()):
        entry["fullUrl"] = draw(st.sampled_from(["urn:uuid:a", "urn:uuid:b", "Patient/p", ""]))
    return entry


@SETTINGS
@given(kind=st.sampled_from(["transaction", "batch", "searchset", ""]), data=st.data())
def test_hostile_bundles_are_processed_or_refused_never_a_5xx(
    fhir: TestClient, kind: str, data: st.DataObject
) -> None:
    _world(fhir)
    entries = [_entry(data.draw) for _ in range(data.draw(st.integers(0, 5)))]
    before = fhir.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    answer = fhir.post("/fhir", json={"resourceType": "Bundle", "type": kind, "entry": entries},
                       headers={"Content-Type": FHIR})  # fmt: skip
    _clean(answer)
    if kind == "transaction" and answer.status_code >= 400:
        assert fhir.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == before
