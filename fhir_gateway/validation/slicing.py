"""Which slice an item belongs to (FHIR R4 profiling.html#slicing, #discriminator).

A slice is recognised by the values its rules fix at each discriminator path: ``value``
compares with the slice's ``fixed[x]`` (or ``pattern[x]``) at that path, ``pattern``
checks that the item holds the slice's ``pattern[x]`` there. Paths are dotted element
names (``system``, ``coding.system``) or ``$this``.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.validation.elements import Rule


def matches_pattern(pattern: Any, value: Any) -> bool:
    """elementdefinition.html#pattern: every property of the pattern is in ``value``; each
    pattern array item is matched by some item of the value's array."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(matches_pattern(v, value.get(k)) for k, v in pattern.items())
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [] if value is None else [value]
        return all(any(matches_pattern(p, v) for v in values) for p in pattern)
    return bool(pattern == value)


def _values_at(value: Any, path: str) -> list[Any]:
    """Values at a dotted ``path`` of ``value``, flattening arrays (FHIRPath navigation)."""
    current = value if isinstance(value, list) else [value]
    if path == "$this":
        return current
    for name in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and name in item:
                found = item[name]
                nxt.extend(found if isinstance(found, list) else [found])
        current = nxt
    return current


def _rule_at(rule: Rule, path: str) -> Rule | None:
    if path == "$this":
        return rule
    current: Rule | None = rule
    for name in path.split("."):
        current = current.children.get(name) if current is not None else None
    return current


def _holds(discriminator_type: str, rule: Rule | None, values: list[Any]) -> bool:
    if rule is None:
        return False
    if rule.fixed is not None:
        return rule.fixed in values
    if rule.pattern is not None:
        return any(matches_pattern(rule.pattern, v) for v in values)
    return False


def slice_of(rule: Rule, item: Any) -> str | None:
    """The name of the first slice of ``rule`` that ``item`` matches, or None."""
    for name, sliced in rule.slices.items():
        if all(
            _holds(d.type, _rule_at(sliced, d.path), _values_at(item, d.path)) for d in rule.discriminators
        ):
            return name
    return None
