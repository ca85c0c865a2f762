"""Which searches PostgreSQL plans with their values (``search.shape.plans_with_values``) and the
request sessions' generic plans otherwise (``storage.database.GENERIC_PLANS``,
``planned_with_values``): PostgreSQL's ``plan_cache_mode``, sql-prepare.html."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, text

from fhir_gateway.search.parser import parse_search
from fhir_gateway.search.shape import Literals, plans_with_values, where_shape
from fhir_gateway.storage.database import Database, planned_with_values


def _with_values(res_type: str, query: str) -> bool:
    items = [tuple(pair.split("=", 1)) for pair in query.split("&")]
    request = parse_search(res_type, items, default_count=20, max_count=100, strict=True)  # type: ignore[arg-type]
    return plans_with_values(where_shape(request, Literals()))


@pytest.mark.parametrize(
    ("res_type", "query", "expected"),
    [
        ("Task", "_lastUpdated=gt2026-11-01", True),  # a range: how many rows depends on the date
        ("Task", "authored-on=ge2026-01-01&status=requested", True),
        ("Patient", "name=dur", True),  # a prefix
        ("Patient", "name:contains=ura", True),
        ("Task", "code:text=visite", True),
        ("Task", "patient.name=dur", True),  # through a chain
        ("Patient", "_has:Task:patient:authored-on=ge2026-01-01", True),  # through _has
        ("AuditEvent", "date=ge2026-11-01&agent=Organization/saad", True),
        ("Task", "patient=Patient/p1&_lastUpdated=gt2026-11-01", False),  # the person's few rows first
        ("Task", "_id=t1,t2&_lastUpdated=gt2026-11-01", False),  # the ids first
        ("Task", "status=requested&owner=Organization/saad", False),  # equalities: one plan fits all
        ("CarePlan", "subject=Patient/p1&_include=CarePlan:care-team", False),
        ("Patient", "identifier=urn:oid:1.2.250.1.213.1.4.8|1234567890123", False),
    ],
)
def test_searches_planned_with_their_values(res_type: str, query: str, expected: bool) -> None:
    assert _with_values(res_type, query) is expected


def test_a_request_session_plans_with_values_in_the_block_only(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL's plan_cache_mode")
    served = Database(database.url, pool_size=1)

    def modes(conn: Connection) -> list[str]:
        show = text("SHOW plan_cache_mode")
        found = [conn.execute(show).scalar_one()]
        with planned_with_values(conn):
            found.append(conn.execute(show).scalar_one())
        found.append(conn.execute(show).scalar_one())
        return found

    async def twice() -> list[list[str]]:
        return [await served.run(modes), await served.run(modes, write=True)]

    try:
        found = asyncio.run(twice())
    finally:
        served.dispose()
    assert found == [["force_generic_plan", "force_custom_plan", "force_generic_plan"]] * 2
