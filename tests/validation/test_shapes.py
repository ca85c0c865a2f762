"""Validation by shape gives the verdict of the full R4 model check (validation/shapes.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from fhir_gateway.kit.errors import Unprocessable
from fhir_gateway.validation.shapes import ShapeCache, shape
from fhir_gateway.validation.structural import _model, validate_structure

TASK: dict[str, Any] = {
    "resourceType": "Task",
    "identifier": [{"system": "urn:fhir-gateway:x:intervention", "value": "INT-1"}],
    "status": "completed",
    "intent": "order",
    "code": {"coding": [{"system": "https://fhir-gateway.org/fhir/CodeSystem/x", "code": "aide-lever"}]},
    "for": {"reference": "Patient/abc"},
    "restriction": {"period": {"start": "2025-01-01T08:00:00+01:00", "end": "2025-01-01T09:00:00+01:00"}},
    "input": [{"type": {"coding": [{"code": "intervenant"}]}, "valueString": "AV-1"}],
    "output": [{"type": {"coding": [{"code": "appreciation-sante"}]}, "valueInteger": 3}],
    "note": [{"text": "Observation ; visite"}],
}


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


MUTATIONS = [
    (("status",), "bad  code"),
    (("status",), " completed"),
    (("status",), ""),
    (("status",), 3),
    (("identifier", 0, "value"), ""),
    (("identifier", 0, "value"), "   "),
    (("identifier", 0, "system"), "has space"),
    (("restriction", "period", "start"), "2025-13-01T08:00:00+01:00"),
    (("restriction", "period", "start"), "2025-01-01T08:00:00"),
    (("restriction", "period", "start"), "2025-01-01"),
    (("restriction", "period", "end"), "tomorrow"),
    (("output", 0, "valueInteger"), 2**40),
    (("output", 0, "valueInteger"), 3.5),
    (("output", 0, "valueInteger"), "3"),
    (("output", 0, "valueInteger"), True),
    (("input", 0, "valueString"), ""),
    (("note", 0, "text"), ""),
    (("for", "reference"), ""),
    (("code", "coding", 0, "code"), "a\tb"),
    (("intent",), None),
    (("note",), [None]),
    (("for",), {"reference": "Patient/abc", "unknown": 1}),
]


def _full_verdict(res_type: str, body: dict[str, Any]) -> bool:
    try:
        _model(res_type).model_validate(copy.deepcopy(body))
    except (ValidationError, TypeError, ValueError):
        return False
    return True


@pytest.mark.parametrize(("path", "value"), MUTATIONS)
def test_same_verdict_as_the_model(path: tuple[Any, ...], value: Any) -> None:
    validate_structure("Task", copy.deepcopy(TASK))  # the shape is now known
    body = _set(TASK, path, value)
    expected = _full_verdict("Task", body)
    try:
        validate_structure("Task", body)
        verdict = True
    except Unprocessable:
        verdict = False
    assert verdict is expected, (path, value)


def test_a_known_shape_skips_the_model_and_checks_each_value() -> None:
    cache = ShapeCache()
    known, key = cache.passes("Task", TASK)
    assert not known
    cache.learn(key, _model("Task"), TASK)
    assert cache.passes("Task", _set(TASK, ("identifier", 0, "value"), "INT-2"))[0]
    assert not cache.passes("Task", _set(TASK, ("restriction", "period", "start"), "2025-02-30"))[0]
    assert shape(TASK) != shape(_set(TASK, ("output", 0, "valueInteger"), "3"))


def test_contained_resources_are_always_checked_in_full() -> None:
    cache = ShapeCache()
    body = {**TASK, "contained": [{"resourceType": "Patient", "id": "p"}]}
    _known, key = cache.passes("Task", body)
    cache.learn(key, _model("Task"), body)
    assert not cache.passes("Task", body)[0]


def test_values_found_valid_are_remembered_per_element_type_only() -> None:
    """A value checked once is not checked again for the same FHIR type, never for another
    (``tomorrow`` is valid markdown, not a dateTime; ``bad  code`` a string, not a code)."""
    validate_structure("Task", _set(TASK, ("note", 0, "text"), "tomorrow"))
    validate_structure("Task", _set(TASK, ("identifier", 0, "value"), "bad  code"))
    with pytest.raises(Unprocessable):
        validate_structure("Task", _set(TASK, ("restriction", "period", "end"), "tomorrow"))
    with pytest.raises(Unprocessable):
        validate_structure("Task", _set(TASK, ("status",), "bad  code"))
    for _ in range(2):  # the second time from what was remembered
        validate_structure("Task", _set(TASK, ("restriction", "period", "end"), "2025-01-01T10:00:00Z"))
