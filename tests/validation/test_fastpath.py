"""The fast FHIRPath subset gives fhirpathpy's answers: on every invariant of every profile,
for every example and defect, and on expressions that exercise three-valued logic."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpathpy import compile as fhirpath_compile

from fhir_gateway.validation.elements import Rule
from fhir_gateway.validation.fastpath import compile_fast
from fhir_gateway.validation.invariants import Invariant
from fhir_gateway.validation.registry import registry
from tests.validation.examples import CASES, VALID, broken, valid


def _navigate(values: list[Any], rule: Rule) -> list[Any]:
    stem = rule.name[:-3] if rule.is_choice else rule.name
    out: list[Any] = []
    for value in values:
        for key, found in value.items() if isinstance(value, dict) else []:
            if key == stem or (rule.is_choice and key.startswith(stem) and key[len(stem)].isupper()):
                out.extend(found if isinstance(found, list) else [found])
    return out


def _pairs(rule: Rule, values: list[Any]) -> list[tuple[Invariant, Any]]:
    pairs = [(inv, v) for inv in rule.invariants for v in values]
    for child in rule.children.values():
        pairs += _pairs(child, _navigate(values, child))
    for sliced in rule.slices.values():
        pairs += [(inv, v) for inv in sliced.invariants for v in values]
        for child in sliced.children.values():
            pairs += _pairs(child, _navigate(values, child))
    return pairs


RESOURCES = [valid(name) for name in VALID] + [broken(name, patch) for name, _, patch, _ in CASES]


def test_every_profile_invariant_has_a_fast_path() -> None:
    for profile in registry().profiles.values():
        for invariant, _ in _pairs(profile.root, [{}]):
            assert invariant.fast is not None, invariant.key


@pytest.mark.parametrize("index", range(len(RESOURCES)))
def test_fast_path_agrees_with_fhirpathpy(index: int) -> None:
    resource = RESOURCES[index]
    for profile in registry().profiles.values():
        if profile.type != resource["resourceType"]:
            continue
        for invariant, value in _pairs(profile.root, [resource]):
            assert invariant.holds(value) == invariant.holds_fhirpathpy(value), (invariant.key, value)


@pytest.mark.parametrize(
    "expression",
    [
        "a.exists() and b.exists()",
        "a.exists() or b = 1",
        "b = 1 implies c.empty()",
        "b = 2 xor a.exists()",
        "a.exists().not()",
        "a.where(x = 'y').count() <= 1",
        "a.all(x.exists())",
        "(b + 2) mod 2 = 1",
        "s.substring(1, 2) = 'bc'",
        "s.matches('^ab') and s.startsWith('a')",
        "s.replace('b', 'z') = 'azc'",
        "n.toInteger() = 12",
        "missing = 1",
        "missing.empty() implies true",
    ],
)
def test_subset_expressions(expression: str) -> None:
    fast = compile_fast(expression)
    assert fast is not None
    reference = fhirpath_compile(expression)
    for data in (
        {"a": [{"x": "y"}], "b": 1, "s": "abc", "n": "12"},
        {"b": 2, "a": [{"x": "y"}, {"x": "y"}]},
        {},
    ):
        assert fast([data]) == reference(data), (expression, data)


def test_outside_the_subset_falls_back() -> None:
    assert compile_fast("a.descendants().exists()") is None
    assert compile_fast("now() > %resource.date") is None
