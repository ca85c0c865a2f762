"""Typed parsing of search values (FHIR R4 search.html#ptypes, #escaping, #prefix)."""

from __future__ import annotations

import re

from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.search.dates import parse_date_range
from fhir_gateway.search.model import Value
from fhir_gateway.search.registry import SearchParam

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` not preceded by a backslash (search.html#escaping)."""
    if "\\" not in text:  # nothing escaped (nearly every value): the plain split, in C
        return text.split(separator)
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current + ("\\" if escaped else ""))
    return parts


_ESCAPED = re.compile(r"\\([,|$\\])")


def unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text) if "\\" in text else text


def _prefix(raw: str) -> tuple[str, str]:
    if len(raw) > 2 and raw[:2] in PREFIXES and not raw[:2].isdigit():
        return raw[:2], raw[2:]
    return "eq", raw


def parse_value(param: SearchParam, raw: str, modifier: str | None) -> Value:
    """One OR-ed value of ``param``; 400 naming the parameter when it is malformed."""
    name = param.code
    if param.type == "token":
        if modifier == "text":
            return Value(raw=unescape(raw))
        parts = split_unescaped(raw, "|")
        if len(parts) == 1:
            return Value(raw=raw, code=unescape(parts[0]))
        system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
        return Value(raw=raw, system=system, code=code or None)
    if param.type == "date":
        prefix, text = _prefix(raw)
        try:
            low, high = parse_date_range(text)
        except ValueError:
            raise BadRequest(
                f"Search parameter '{name}': '{raw[:60]}' is not a valid date", expression=[name]
            ) from None
        return Value(raw=raw, prefix=prefix, low=low, high=high)
    if param.type in ("number", "quantity"):
        prefix, text = _prefix(raw)
        parts = split_unescaped(text, "|")
        if not _NUMBER.match(parts[0]):
            raise BadRequest(f"Search parameter '{name}': '{raw[:60]}' is not a number", expression=[name])
        unit_system = unescape(parts[1]) if len(parts) > 1 and parts[1] else None
        unit_code = unescape(parts[2]) if len(parts) > 2 and parts[2] else None
        return Value(raw=raw, prefix=prefix, number=float(parts[0]), system=unit_system, code=unit_code)
    if param.type == "reference":
        text = unescape(raw)
        path = text.split("/_history/")[0]
        pieces = path.split("/")
        if len(pieces) >= 2 and pieces[-2][:1].isupper():
            return Value(raw=raw, target_type=pieces[-2], target_id=pieces[-1], code=text)
        if modifier and modifier[:1].isupper():
            return Value(raw=raw, target_type=modifier, target_id=text, code=text)
        return Value(raw=raw, target_id=text, code=text)
    return Value(raw=raw, code=unescape(raw))
