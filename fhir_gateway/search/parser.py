"""Parsing a search's query parameters into a SearchRequest (FHIR R4 search.html).

Repeated parameters AND together, commas OR; modifiers ``:exact :contains :missing :not
:text :below :above`` and reference type modifiers; chains ``subject:Patient.name=x``;
reverse chains ``_has:Task:patient:status=requested``; result parameters ``_include``,
``_revinclude`` (``:iterate``), ``_sort``, ``_count``, ``_total``, ``_summary``, ``_elements``,
and ``_cursor`` (a paging link's position, kept aside for ``fhir.cursors`` to verify).
Unknown parameters are collected (or refused under strict handling); so is ``_offset``:
a client pages with the links it is given, internal pagers set ``SearchRequest.offset``.
"""

from __future__ import annotations

from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.kit.lru import Lru
from fhir_gateway.search.model import Chain, Criterion, Has, Include, SearchRequest
from fhir_gateway.search.registry import SearchParam, param, params_for
from fhir_gateway.search.values import parse_value, split_unescaped

RESULT_PARAMS = frozenset(
    {
        "_include",
        "_revinclude",
        "_sort",
        "_count",
        "_total",
        "_summary",
        "_elements",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)
MODIFIERS = frozenset({"exact", "contains", "missing", "not", "text", "below", "above", "identifier"})
MAX_CHAIN_DEPTH = 3
OFFSET_REFUSED = "not accepted; page with the Bundle's next/previous links (their _cursor)"


def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(f"Search parameter '{name}': {message}", expression=[name])


def _int(name: str, raw: str, maximum: int) -> int:
    if not raw.isdigit():
        raise _bad(name, f"'{raw[:40]}' is not a non-negative integer")
    return min(int(raw), maximum)


def parse_criterion(res_type: str, name: str, raw: str, depth: int = 0) -> Criterion | None:
    """``name=raw`` on ``res_type``; None when the parameter is unknown."""
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    found = param(res_type, code)
    if found is None:
        return None
    if dot:
        return _chain(res_type, found, modifier or None, rest, raw, depth)
    mod = modifier or None
    if mod is not None and mod not in MODIFIERS and not (found.type == "reference" and mod[:1].isupper()):
        raise _bad(name, f"modifier ':{mod}' is not supported")
    if mod == "missing":
        if raw not in ("true", "false"):
            raise _bad(name, ":missing takes true or false")
        return Criterion(found, mod, (), missing=raw == "true")
    values = tuple(parse_value(found, v, mod) for v in split_unescaped(raw, ",") if v != "")
    if not values:
        raise _bad(name, "no value given")
    return Criterion(found, mod, values)


# Criteria parsed before, by (type, name, text): parsing is pure (the registry is fixed) and a
# Criterion immutable, and clients send the same criteria again (a status list, a person's
# reference). Bounded: criteria of longer text are parsed each time.
_parsed: Lru[Criterion] = Lru(4096)
PARSED_TEXT_KEPT = 256


def known_criterion(res_type: str, name: str, raw: str) -> Criterion | None:
    """``parse_criterion(res_type, name, raw)``, parsed once for repeated criteria."""
    key = (res_type, name, raw)
    found = _parsed.get(key)
    if found is None:
        found = parse_criterion(res_type, name, raw)
        if found is not None and len(raw) + len(name) <= PARSED_TEXT_KEPT:
            _parsed.put(key, found)
    return found


def _chain(
    res_type: str, ref: SearchParam, type_modifier: str | None, rest: str, raw: str, depth: int
) -> Criterion:
    name = f"{ref.code}.{rest}"
    if ref.type != "reference":
        raise _bad(name, "only reference parameters can be chained")
    if depth >= MAX_CHAIN_DEPTH:
        raise _bad(name, f"chains deeper than {MAX_CHAIN_DEPTH} are not supported")
    targets = [type_modifier] if type_modifier else [t for t in ref.targets if params_for(t)]
    if len(targets) != 1:
        raise _bad(name, f"the chain is ambiguous; name the target type, e.g. {ref.code}:Patient.{rest}")
    inner = parse_criterion(targets[0], rest, raw, depth + 1)
    if inner is None:
        raise _bad(name, f"'{rest.split('.')[0]}' is not a search parameter of {targets[0]}")
    return Criterion(ref, None, (), chain=Chain(targets[0], inner))


def parse_has(res_type: str, name: str, raw: str, depth: int = 0) -> Has:
    """``_has:Source:refparam:criterion`` (possibly nested)."""
    parts = name.split(":", 3)
    if len(parts) < 4 or depth >= MAX_CHAIN_DEPTH:
        raise _bad(name, "expected _has:Type:reference-parameter:parameter=value")
    _, source, ref_code, rest = parts
    ref = param(source, ref_code)
    if ref is None or ref.type != "reference":
        raise _bad(name, f"'{ref_code}' is not a reference parameter of {source}")
    if rest.startswith("_has:"):
        return Has(source, ref_code, None, parse_has(source, rest, raw, depth + 1))
    criterion = parse_criterion(source, rest, raw)
    if criterion is None:
        raise _bad(name, f"'{rest}' is not a search parameter of {source}")
    return Has(source, ref_code, criterion)


def _include(name: str, raw: str, reverse: bool, iterate: bool) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or param(parts[0], parts[1]) is None:
        raise _bad(name, f"'{raw[:80]}' is not Type:reference-parameter[:TargetType]")
    if param(parts[0], parts[1]).type != "reference":  # type: ignore[union-attr]
        raise _bad(name, f"'{parts[1]}' is not a reference parameter")
    return Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate, reverse)


def parse_search(
    res_type: str, items: list[tuple[str, str]], *, default_count: int, max_count: int, strict: bool
) -> SearchRequest:
    """The SearchRequest for ``items`` (query or form pairs) on ``res_type``."""
    request = SearchRequest(res_type, count=default_count)
    for name, raw in items:
        if "\x00" in name or "\x00" in raw:
            raise _bad(name.replace("\x00", "")[:64], "contains a NUL character")
        base = name.split(":")[0]
        if name == "_id":
            request.ids.append(tuple(v for v in split_unescaped(raw, ",") if v))
        elif base in ("_include", "_revinclude"):
            mods = name.split(":")[1:]
            request.includes.append(_include(name, raw, base == "_revinclude", "iterate" in mods))
        elif name == "_sort":
            for key in raw.split(","):
                desc = key.startswith("-")
                code = key.lstrip("-")
                if code not in ("_id", "_lastUpdated") and param(res_type, code) is None:
                    raise _bad("_sort", f"'{code[:60]}' is not a search parameter of {res_type}")
                request.sort.append((code, desc))
        elif name == "_count":
            request.count = _int(name, raw, max_count)
        elif name == "_cursor":
            request.cursor = raw or None
            continue
        elif name == "_offset":
            if strict:
                raise _bad(name, OFFSET_REFUSED)
            request.ignored.append(name)
            continue
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise _bad(name, "takes none, estimate or accurate")
            request.total = raw
        elif name == "_summary":
            if raw not in ("true", "false", "text", "data", "count"):
                raise _bad(name, "takes true, false, text, data or count")
            request.summary = None if raw == "false" else raw
        elif name == "_elements":
            request.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
        elif name in RESULT_PARAMS:
            pass
        elif name.startswith("_has:"):
            request.has.append(parse_has(res_type, name, raw))
        else:
            criterion = known_criterion(res_type, name, raw)
            if criterion is None:
                if strict:
                    raise _bad(name, f"unknown search parameter for {res_type}")
                request.ignored.append(name)
                continue
            request.criteria.append(criterion)
        request.kept.append((name, raw))
    return request
