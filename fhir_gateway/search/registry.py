"""The search parameter registry, from the official R4 SearchParameter definitions.

FHIR R4 searchparameter-registry.html: ``data/search-parameters-r4.json`` is the published
``search-parameters.json`` restricted to the stored types. Each parameter keeps its code,
type, FHIRPath expression (the part for one base type), targets and modifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.kit import jsonutil

DATA = Path(__file__).parent / "data" / "search-parameters-r4.json"
INDEXED_KINDS = frozenset({"token", "string", "date", "reference", "quantity", "number", "uri"})
# Parameters answered from the resource row itself (``res_id``, ``last_updated``) rather than
# from index rows: every resource has exactly one value of each (FHIR R4 search.html#_id,
# #_lastUpdated), so the search index holds none of them.
ROW_PARAMS = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type."""

    code: str
    type: str
    paths: tuple[str, ...]  # FHIRPath sub-expressions for this base type, e.g. "Task.for.where(...)"
    targets: tuple[str, ...] = ()


def _split_expression(expression: str, base: str) -> tuple[str, ...]:
    parts = [p.strip() for p in expression.split("|")]
    mine = []
    for part in parts:
        bare = part.strip("()")
        if bare.startswith(base + ".") or bare == base:
            mine.append(part)
    return tuple(mine)


@cache
def _all_params() -> dict[str, dict[str, SearchParam]]:
    bundle = jsonutil.loads(DATA.read_bytes())
    by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in STORED_TYPES}
    common: dict[str, SearchParam] = {}
    for entry in bundle["entry"]:
        sp = entry["resource"]
        if sp["type"] not in INDEXED_KINDS or "expression" not in sp and sp["code"] != "_id":
            continue
        for base in sp["base"]:
            if base in ("Resource", "DomainResource"):
                paths = tuple(
                    p.replace("Resource.", "", 1) for p in sp.get("expression", "Resource.id").split("|")
                )
                if sp["code"] in ("_text", "_content", "_query", "_list", "_has", "_type"):
                    continue
                common[sp["code"]] = SearchParam(
                    sp["code"], sp["type"], tuple(p.strip() for p in paths), tuple(sp.get("target", ()))
                )
            elif base in by_type:
                paths = _split_expression(sp["expression"], base)
                if paths:
                    by_type[base][sp["code"]] = SearchParam(
                        sp["code"], sp["type"], paths, tuple(sp.get("target", ()))
                    )
    for params in by_type.values():
        for code, param in common.items():
            params.setdefault(code, param)
    return by_type


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The search parameters of ``resource_type`` by code (empty for unknown types)."""
    return _all_params().get(resource_type, {})


def param(resource_type: str, code: str) -> SearchParam | None:
    return params_for(resource_type).get(code)
