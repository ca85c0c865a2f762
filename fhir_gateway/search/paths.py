"""A small evaluator for the FHIRPath expressions of the R4 search parameters.

FHIR R4 fhirpath.html, restricted to what ``search-parameters.json`` uses for the stored
types: dotted paths (with choice elements ``value[x]``), ``(X.y as Type)``,
``.where(resolve() is Type)``, ``.where(field='literal')`` and the ``deceased`` test.
Expressions are compiled once into steps; evaluation walks plain dicts and lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

Step = Callable[[list[Any]], list[Any]]

_AS = re.compile(r"^\((.+) as (\w+)\)$")
_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_WHERE_FIELD = re.compile(r"^where\((\w+)='([^']*)'\)$")


def _children(items: Iterable[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if name in item:
            value = item[name]
            out.extend(value if isinstance(value, list) else [value])
            continue
        prefix = name
        for key, value in item.items():  # choice element: value[x] -> valueQuantity...
            if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
                out.extend(value if isinstance(value, list) else [value])
    return out


def _child_step(name: str) -> Step:
    return lambda items: _children(items, name)


def _choice_step(name: str, type_name: str) -> Step:
    return _choice_key_step(name + type_name[0].upper() + type_name[1:])


def _resolve_is(type_name: str) -> Step:
    prefix = type_name + "/"

    def step(items: list[Any]) -> list[Any]:
        out = []
        for item in items:
            ref = item.get("reference", "") if isinstance(item, dict) else ""
            tail = ref.split("/_history/")[0]
            if tail.startswith(prefix) or f"/{prefix}" in tail:
                out.append(item)
        return out

    return step


def _field_equals(field: str, literal: str) -> Step:
    return lambda items: [i for i in items if isinstance(i, dict) and i.get(field) == literal]


def _split(path: str) -> list[str]:
    """Split on dots outside parentheses and quotes."""
    parts, depth, quote, current = [], 0, False, ""
    for char in path:
        if char == "'":
            quote = not quote
        if not quote and char == "(":
            depth += 1
        elif not quote and char == ")":
            depth -= 1
        if char == "." and depth == 0 and not quote:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


@cache
def compile_path(expression: str, base: str) -> tuple[Step, ...]:
    """Compile one ``|``-free sub-expression rooted at ``base`` into steps."""
    first, rest = compile_split(expression, base)
    if first is None:
        return rest
    name, exact = first
    return ((_choice_key_step(name) if exact else _child_step(name)), *rest)


First = tuple[str, bool]  # the element the first step reads: (name, exact key) or (name, choice too)


@cache
def compile_split(expression: str, base: str) -> tuple[First | None, tuple[Step, ...]]:
    """``compile_path`` as (the element its first step reads from the root, the other steps);
    None and every step when the first step is not a plain element (``deceased``, a filter).

    ``(name, False)``: the element ``name`` or, when absent, its choice forms (``value[x]``);
    ``(name, True)``: exactly the key ``name`` (``(X as Type)``)."""
    expr = expression.strip()
    as_match = _AS.match(expr)
    if as_match:
        inner = _split(as_match.group(1))
        if inner and inner[0] == base:
            inner = inner[1:]
        choice = inner[-1]
        key = choice + as_match.group(2)[0].upper() + as_match.group(2)[1:]
        if len(inner) == 1:
            return (key, True), ()
        return (inner[0], False), (
            *(_child_step(n) for n in inner[1:-1]),
            _choice_step(choice, as_match.group(2)),
        )
    if expr.endswith("Patient.deceased != false"):
        return None, (_deceased,)
    parts = _split(expr)
    if parts and parts[0] == base:
        parts = parts[1:]
    steps: list[Step] = []
    for part in parts:
        resolve = _WHERE_RESOLVE.match(part)
        field = _WHERE_FIELD.match(part)
        if resolve:
            steps.append(_resolve_is(resolve.group(1)))
        elif field:
            steps.append(_field_equals(field.group(1), field.group(2)))
        elif re.fullmatch(r"\w+", part):
            steps.append(_child_step(part))
        else:
            raise ValueError(f"unsupported FHIRPath step {part!r} in {expression!r}")
    if parts and re.fullmatch(r"\w+", parts[0]):
        return (parts[0], False), tuple(steps[1:])
    return None, tuple(steps)


def _choice_key_step(key: str) -> Step:
    return lambda items: [
        v
        for i in items
        if isinstance(i, dict) and key in i
        for v in (i[key] if isinstance(i[key], list) else [i[key]])
    ]


def root_keys(first: First, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys of a root with ``keys`` that the first step ``first`` reads, in their order."""
    name, exact = first
    if name in keys or exact:
        return (name,) if name in keys else ()
    size = len(name)
    return tuple(k for k in keys if k.startswith(name) and len(k) > size and k[size].isupper())


def _deceased(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("deceasedBoolean") is True or "deceasedDateTime" in item:
            out.append(True)
        elif item.get("deceasedBoolean") is False:
            out.append(False)
    return out


def evaluate(resource: dict[str, Any], expression: str) -> list[Any]:
    """The values ``expression`` selects in ``resource``."""
    items: list[Any] = [resource]
    for step in compile_path(expression, str(resource.get("resourceType", ""))):
        items = step(items)
        if not items:
            break
    return items
