"""The official HL7 examples (../shared/fhir-examples/) round-trip through the server.

Each file is PUT with its own id, read back identical apart from ``meta``, and found again
by at least two of its own search parameters (FHIR R4 search.html).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_gateway.search.indexing import extract_index_rows

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir-examples"
FILES = sorted(p for p in EXAMPLES.glob("*.json"))
FHIR = "application/fhir+json"


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _meta_kept(sent: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Client meta elements other than versionId/lastUpdated survive."""
    sent_meta = {k: v for k, v in (sent.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    stored_meta = stored.get("meta") or {}
    return all(stored_meta.get(k) == v for k, v in sent_meta.items())


def _queries(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """Search queries (param, value) that must match ``resource``, from its own index rows."""
    queries: list[tuple[str, str]] = []
    rows = extract_index_rows(resource)
    for row in rows.get("token", []):
        if row["code"] and not row["param"].startswith("_") and "|" not in str(row["code"]):
            value = f"{row['system']}|{row['code']}" if row["system"] else str(row["code"])
            queries.append((row["param"], value.replace(",", "\\,").replace("$", "\\$")))
    for row in rows.get("reference", []):
        if row["target_type"] and row["target_id"]:
            queries.append((row["param"], f"{row['target_type']}/{row['target_id']}"))
    for row in rows.get("string", []):
        if row["value_exact"] and not row["param"].startswith("_"):
            queries.append(
                (row["param"], str(row["value_exact"])[:20].replace(",", "\\,").replace("$", "\\$"))
            )
    seen: set[str] = set()
    unique = []
    for param, value in queries:
        if param not in seen:
            seen.add(param)
            unique.append((param, value))
    return unique


def test_examples_are_present() -> None:
    assert len(FILES) >= 90


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_example_round_trips_and_is_found(fhir: TestClient, path: Path) -> None:
    sent = json.loads(path.read_text())
    res_type, res_id = sent["resourceType"], sent["id"]
    put = fhir.put(f"/fhir/{res_type}/{res_id}", content=path.read_bytes(), headers={"Content-Type": FHIR})
    assert put.status_code in (200, 201), put.text
    stored = fhir.get(f"/fhir/{res_type}/{res_id}").json()
    assert _without_meta(stored) == _without_meta(sent)
    assert _meta_kept(sent, stored)

    queries = _queries(sent)
    found_by = []
    for param, value in queries:
        response = fhir.get(f"/fhir/{res_type}", params={param: value, "_count": "200"})
        assert response.status_code == 200, (param, value, response.text)
        ids = [
            e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
        ]
        assert res_id in ids, (param, value)
        found_by.append(param)
    by_id = fhir.get(f"/fhir/{res_type}", params={"_id": res_id}).json()
    assert [e["resource"]["id"] for e in by_id["entry"]] == [res_id]
    assert len(found_by) + 1 >= 2, f"{path.name} is found by {found_by} and _id only"
