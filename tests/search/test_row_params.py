"""``_id`` and ``_lastUpdated`` answered from the resource row (FHIR R4 search.html#_id,
#_lastUpdated; ``search.registry.ROW_PARAMS``), through HTTP on the test engine.

The resource shows its ``meta.lastUpdated`` in milliseconds while the row keeps microseconds:
every prefix and precision must match as the shown instant would. The expected ids come from
search.html#prefix applied in Python to the instants the resources show.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_gateway.search.dates import parse_date_range

FHIR = "application/fhir+json"
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _ids(fhir: TestClient, path: str, params: dict[str, str]) -> list[str]:
    response = fhir.get(f"/fhir/{path}", params={**params, "_count": "100"})
    assert response.status_code == 200, response.text
    return sorted(
        e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    )


def _matches(prefix: str, shown: tuple[datetime, datetime], value: tuple[datetime, datetime]) -> bool:
    """search.html#prefix for a resource range and a value range (``ap``: they overlap)."""
    (lo, hi), (low, high) = shown, value
    return {
        "eq": low <= lo and hi <= high,
        "ne": not (low <= lo and hi <= high),
        "gt": hi > high,
        "lt": lo < low,
        "ge": hi >= low,
        "le": lo <= high,
        "sa": lo > high,
        "eb": hi < low,
        "ap": lo <= high and hi >= low,
    }[prefix]


def _variants(stamp: str) -> list[str]:
    """Values around an instant shown as ``YYYY-MM-DDThh:mm:ss.fffZ``: itself, sub-millisecond
    values inside and beside it, coarser precisions and another zone."""
    moment = datetime.fromisoformat(stamp.replace("Z", ""))
    before, after = moment - timedelta(milliseconds=1), moment + timedelta(milliseconds=1)
    fine = [moment + timedelta(microseconds=d) for d in (0, 400, 999)]
    zoned = (moment + timedelta(hours=1)).isoformat(timespec="milliseconds") + "+01:00"
    return [
        stamp,
        *(f.isoformat(timespec="microseconds") + "Z" for f in fine),
        (before + timedelta(microseconds=999)).isoformat(timespec="microseconds") + "Z",
        before.isoformat(timespec="milliseconds") + "Z",
        after.isoformat(timespec="milliseconds") + "Z",
        moment.isoformat(timespec="seconds") + "Z",
        moment.date().isoformat(),
        zoned,
    ]


@pytest.fixture
def people(fhir: TestClient) -> dict[str, str]:
    """Four Patients and a Task each: id -> the ``meta.lastUpdated`` the Patient shows."""
    shown = {}
    for n in range(4):
        body = {"resourceType": "Patient", "id": f"row{n}", "gender": "female"}
        response = fhir.put(f"/fhir/Patient/row{n}", json=body, headers={"Content-Type": FHIR})
        assert response.status_code == 201, response.text
        shown[f"row{n}"] = response.json()["meta"]["lastUpdated"]
        task = {"resourceType": "Task", "id": f"task{n}", "status": "requested", "intent": "order",
                "for": {"reference": f"Patient/row{n}"}}  # fmt: skip
        assert fhir.put(f"/fhir/Task/task{n}", json=task, headers={"Content-Type": FHIR}).status_code == 201
    return shown


def test_last_updated_every_prefix_and_precision_as_the_shown_instant(
    fhir: TestClient, people: dict[str, str]
) -> None:
    shown = {pid: parse_date_range(stamp) for pid, stamp in people.items()}
    checked = 0
    for stamp in people.values():
        for value in _variants(stamp):
            for prefix in PREFIXES:
                expected = sorted(
                    pid for pid, r in shown.items() if _matches(prefix, r, parse_date_range(value))
                )
                found = _ids(fhir, "Patient", {"_lastUpdated": f"{prefix}{value}", "gender": "female"})
                assert found == expected, (prefix, value, people)
                checked += 1
    assert checked == 4 * 10 * len(PREFIXES)


def test_last_updated_in_chains_has_and_missing(fhir: TestClient, people: dict[str, str]) -> None:
    first = people["row0"]
    assert _ids(fhir, "Task", {"patient._lastUpdated": f"eq{first}"}) == ["task0"]
    assert _ids(fhir, "Task", {"patient._lastUpdated": f"gt{first}"}) == ["task1", "task2", "task3"]
    assert _ids(fhir, "Patient", {"_has:Task:patient:_lastUpdated": "ge2000-01-01"}) == sorted(people)
    assert _ids(fhir, "Patient", {"_lastUpdated:missing": "true"}) == []
    assert _ids(fhir, "Patient", {"_lastUpdated:missing": "false"}) == sorted(people)


def test_id_with_modifiers_chains_and_has(fhir: TestClient, people: dict[str, str]) -> None:
    everyone = sorted(people)
    assert _ids(fhir, "Patient", {"_id": "row1,row2"}) == ["row1", "row2"]
    assert _ids(fhir, "Patient", {"_id:not": "row1"}) == ["row0", "row2", "row3"]
    assert _ids(fhir, "Patient", {"_id:missing": "true"}) == []
    assert _ids(fhir, "Patient", {"_id:missing": "false"}) == everyone
    assert _ids(fhir, "Task", {"patient._id": "row2"}) == ["task2"]
    assert _ids(fhir, "Task", {"patient._id:not": "row2"}) == ["task0", "task1", "task3"]
    assert _ids(fhir, "Patient", {"_has:Task:patient:_id": "task3"}) == ["row3"]
    assert _ids(fhir, "Task", {"patient._id": "urn:x|row2"}) == []  # an id has no system


def test_row_parameters_have_no_index_rows(fhir: TestClient, people: dict[str, str]) -> None:
    from fhir_gateway.search.indexing import extract_index_rows, generic_index_rows

    body: dict[str, Any] = fhir.get("/fhir/Patient/row0").json()
    for rows in (extract_index_rows(body), generic_index_rows(body)):
        params = {row["param"] for kind in rows.values() for row in kind}
        assert "gender" in params
        assert not params & {"_id", "_lastUpdated"}
