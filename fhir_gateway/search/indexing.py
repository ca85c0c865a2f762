"""Search index rows of a resource (FHIR R4 search.html#ptypes), one list per parameter kind.

Each search parameter's expression is evaluated on the resource and the values are turned
into the rows of the ``idx_*`` tables: tokens (system, code), normalised strings, date
ranges, references split into type and id, quantities, numbers and URIs.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from fhir_gateway.kit.errors import Unprocessable
from fhir_gateway.search.dates import parse_date_range
from fhir_gateway.search.paths import Step, compile_split, evaluate, root_keys
from fhir_gateway.search.registry import ROW_PARAMS, SearchParam, params_for

Rows = dict[str, list[dict[str, Any]]]
_STRING_PARTS = {
    "HumanName": ("family", "given", "text", "prefix", "suffix"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Lower case without accents: the form ``:exact``-less string search compares."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()[:255]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        out: list[str] = []
        for key in (
            "family",
            "given",
            "text",
            "prefix",
            "suffix",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "display",
            "value",
        ):
            item = value.get(key)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list):
                out.extend(i for i in item if isinstance(i, str))
        return out
    return []


def _tokens(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    if isinstance(value, str | int):
        return [(None, str(value), None)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "system" not in value and "value" not in value):
        out = [
            (c.get("system"), c.get("code"), c.get("display"))
            for c in value.get("coding", [])
            if isinstance(c, dict)
        ]
        if isinstance(value.get("text"), str):
            out.append((None, None, value["text"]))  # for :text (search.html#modifiers)
        return out
    if "value" in value and ("system" in value or "use" in value or "type" in value):
        return [(value.get("system"), str(value["value"]), None)]  # Identifier, ContactPoint
    if "code" in value or "system" in value:
        return [(value.get("system"), value.get("code"), value.get("display"))]
    return []


# Ranges of the dates seen lately (the rows of a partner file share their days and hours).
date_range = lru_cache(maxsize=4096)(parse_date_range)


def _dates(value: Any) -> list[tuple[Any, Any]]:
    try:
        if isinstance(value, str):
            return [date_range(value)]
        if isinstance(value, dict):
            if "start" in value or "end" in value:  # Period
                low = date_range(value["start"])[0] if value.get("start") else None
                high = date_range(value["end"])[1] if value.get("end") else None
                return [(low, high)]
            if "event" in value:  # Timing
                return [date_range(e) for e in value["event"] if isinstance(e, str)]
    except (ValueError, TypeError):
        return []
    return []


def _reference(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    ref = value.get("reference") if isinstance(value, dict) else value if isinstance(value, str) else None
    if not isinstance(ref, str):
        return []
    found = reference_parts(ref)
    return [] if found is None else [found]


@lru_cache(maxsize=4096)
def reference_parts(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """(type, id, url) of a reference (None for a contained one); the few references of a
    batch of writes repeat (the person, the organisation)."""
    if ref.startswith("#"):
        return None
    path = ref.split("/_history/")[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and "?" not in path:
        return (parts[-2], parts[-1][:64], ref[:512] if "://" in ref else None)
    return (None, None, ref[:512])


TOKEN_CHARS = 255  # idx_token.system/code and idx_quantity.system/code (VARCHAR on PostgreSQL)


def _searchable(param: SearchParam, *texts: Any) -> None:
    """A system or code too long for the index is refused (422), alike on SQLite and PostgreSQL
    (which would otherwise store it, or fail the write with a database error)."""
    for text in texts:
        if isinstance(text, str) and len(text) > TOKEN_CHARS:
            raise Unprocessable(
                f"'{param.code}': a system or code longer than {TOKEN_CHARS} characters cannot be searched"
                f" ('{text[:40]}...')",
                code="too-long",
                expression=[param.code],
            )


def _token_rows(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for value in values:
        for system, code, display in _tokens(value):
            if (isinstance(system, str) and len(system) > TOKEN_CHARS) or (
                isinstance(code, str) and len(code) > TOKEN_CHARS
            ):
                _searchable(param, system, code)
            rows.append(
                {
                    "system": system,
                    "code": code,
                    "display": (display or "")[:255] or None,
                    "param": param.code,
                }
            )
    return rows


def _string_rows(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"value_norm": normalize(s), "value_exact": s[:255], "param": param.code}
        for value in values
        for s in _strings(value)
        if s
    ]


def _date_rows(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    return [{"low": lo, "high": hi, "param": param.code} for value in values for lo, hi in _dates(value)]


def _reference_rows(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"target_type": t, "target_id": i, "url": u, "param": param.code}
        for value in values
        for t, i, u in _reference(value)
    ]


def _other_rows(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    kind, rows = param.type, []
    for value in values:
        if kind == "uri" and isinstance(value, str):
            rows.append({"value": value[:512]})
        elif kind in ("quantity", "number"):
            number = value.get("value") if isinstance(value, dict) else value
            if isinstance(number, int | float) and not isinstance(number, bool):
                row: dict[str, Any] = {"value": float(number)}
                if kind == "quantity" and isinstance(value, dict):
                    row.update(system=value.get("system"), code=value.get("code") or value.get("unit"))
                    _searchable(param, row["system"], row["code"])
                rows.append(row)
    for row in rows:
        row["param"] = param.code
    return rows


_ROWS_BY_KIND = {
    "token": _token_rows,
    "string": _string_rows,
    "date": _date_rows,
    "reference": _reference_rows,
}


def _rows_for(param: SearchParam, values: list[Any]) -> list[dict[str, Any]]:
    """The index rows of ``param``'s ``values`` (each with its ``param``)."""
    return _ROWS_BY_KIND.get(param.type, _other_rows)(param, values)


# One path of a parameter in a plan: the root's keys its first step reads and the other steps
# (keys None: every step from the root).
PlannedPath = tuple[tuple[str, ...] | None, tuple[Step, ...]]
Plan = tuple[tuple[SearchParam, tuple[PlannedPath, ...]], ...]
_PLANS: dict[tuple[str, tuple[str, ...]], Plan] = {}
_PLANS_SIZE = 4096


def indexed_params(res_type: str) -> list[SearchParam]:
    """The parameters of ``res_type`` that have index rows (all but ``ROW_PARAMS``)."""
    return [p for p in params_for(res_type).values() if p.code not in ROW_PARAMS]


def _plan(res_type: str, keys: tuple[str, ...]) -> Plan:
    """The parameters of ``res_type`` that may have values in a resource with top-level
    ``keys``, with their paths reduced to the keys they read: the others are skipped."""
    plan = []
    for param in indexed_params(res_type):
        paths: list[PlannedPath] = []
        for path in param.paths:
            first, rest = compile_split(path, res_type)
            if first is None:
                paths.append((None, rest))
            elif found := root_keys(first, keys):
                paths.append((found, rest))
        if paths:
            plan.append((param, tuple(paths)))
    return tuple(plan)


def extract_index_rows(resource: dict[str, Any]) -> Rows:
    """Index rows of ``resource`` by kind (without res_type/res_id, added by the writer).

    The same rows as evaluating every parameter's expression on the resource, from a plan
    made once per resource type and set of top-level elements (``_plan``): parameters whose
    elements are absent are not evaluated, the others start from the keys they read.
    """
    res_type = str(resource.get("resourceType", ""))
    key = (res_type, tuple(resource))
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _PLANS_SIZE:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(*key)
    out: Rows = {}
    for param, paths in plan:
        values: list[Any] = []
        for keys, steps in paths:
            items: list[Any]
            if keys is None:
                items = [resource]
            else:
                items = []
                for name in keys:
                    value = resource[name]
                    if isinstance(value, list):
                        items.extend(value)
                    else:
                        items.append(value)
            for step in steps:
                if not items:
                    break
                items = step(items)
            values.extend(items)
        if values:
            rows = _rows_for(param, values)
            if rows:
                out.setdefault(param.type, []).extend(rows)
    return out


def generic_index_rows(resource: dict[str, Any]) -> Rows:
    """``extract_index_rows`` by evaluating every parameter's expression (the reference the
    planned extraction is tested against)."""
    res_type = str(resource.get("resourceType", ""))
    out: Rows = {}
    for param in indexed_params(res_type):
        values: list[Any] = []
        for path in param.paths:
            values.extend(evaluate(resource, path))
        if values:
            rows = _rows_for(param, values)
            if rows:
                out.setdefault(param.type, []).extend(rows)
    return out


_COMPARTMENT_PATHS = {
    "Patient": None,
    "Task": ("for",),
    "CarePlan": ("subject",),
    "CareTeam": ("subject",),
    "Goal": ("subject",),
    "ServiceRequest": ("subject",),
    "Consent": ("patient",),
    "RelatedPerson": ("patient",),
    "Provenance": ("target", "entity.what"),
    "AuditEvent": ("entity.what",),
}

# The types whose resources belong to a person (consent decides their writes); the others are
# shared resources (Organization, Practitioner...) under consent.ownership.
PERSON_TYPES: frozenset[str] = frozenset(_COMPARTMENT_PATHS)

# Person types whose resources are always about someone: one that names no Patient (a Task
# without ``for``) is no one's to share, so a partner may neither write nor read it (deny by
# default, issue 4). A Provenance or an AuditEvent may be about a shared resource; a Patient
# is the person.
NAMES_ITS_PERSON: frozenset[str] = PERSON_TYPES - {"Patient", "Provenance", "AuditEvent"}


def person_element(res_type: str) -> str:
    """The element naming the person of a ``res_type`` resource (``Task.for``)."""
    paths = _COMPARTMENT_PATHS.get(res_type) or ("id",)
    return f"{res_type}.{paths[0]}"


def patient_compartment_id(resource: dict[str, Any]) -> str | None:
    """The id of the person a resource belongs to (consent is checked against them)."""
    res_type = resource.get("resourceType")
    if res_type == "Patient":
        return str(resource["id"]) if resource.get("id") else None
    for path in _COMPARTMENT_PATHS.get(str(res_type)) or ():
        for value in evaluate(resource, f"{res_type}.{path}"):
            for target_type, target_id, _url in _reference(value):
                if target_type == "Patient" and target_id:
                    return target_id
    return None
