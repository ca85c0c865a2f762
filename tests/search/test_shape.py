"""Search shapes (fhir_gateway/search/shape.py): equal exactly when the SQL is the same."""

from __future__ import annotations

import pytest

from fhir_gateway.search.parser import parse_search
from fhir_gateway.search.shape import Literals, WhereShape, where_shape


def _shape(res_type: str, query: list[tuple[str, str]]) -> tuple[WhereShape, list[object]]:
    request = parse_search(res_type, query, default_count=20, max_count=100, strict=True)
    lit = Literals()
    return where_shape(request, lit), lit.values


@pytest.mark.parametrize(
    ("res_type", "first", "second"),
    [
        (
            "Task",
            [("patient", "Patient/a"), ("status", "requested")],
            [("patient", "Patient/b"), ("status", "done")],
        ),
        ("Patient", [("identifier", "urn:x|1")], [("identifier", "urn:y|2")]),
        ("Patient", [("family", "Martin")], [("family", "Durand")]),
        ("Patient", [("family", "Martin")], [("family:contains", "Martin")]),  # same LIKE, other pattern
        ("Task", [("authored-on", "ge2024-01-01")], [("authored-on", "ge2025-06-30T10:00:00Z")]),
        ("Task", [("_id", "a,b")], [("_id", "c,d,e")]),  # a list in one slot
        (
            "CarePlan",
            [("subject:Patient.identifier", "urn:x|1")],
            [("subject:Patient.identifier", "urn:x|2")],
        ),
    ],
)
def test_same_structure_other_values_same_shape(
    res_type: str, first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    shape_a, values_a = _shape(res_type, first)
    shape_b, values_b = _shape(res_type, second)
    assert shape_a == shape_b
    assert values_a != values_b


@pytest.mark.parametrize(
    ("res_type", "first", "second"),
    [
        ("Patient", [("identifier", "urn:x|1")], [("identifier", "|1")]),  # a system vs no system
        ("Patient", [("identifier", "urn:x|1")], [("identifier", "1")]),  # a system vs any system
        ("Patient", [("family", "Martin")], [("family:exact", "Martin")]),
        ("Task", [("status", "requested")], [("status:not", "requested")]),
        ("Task", [("status", "requested")], [("status", "requested,accepted")]),
        ("Task", [("authored-on", "ge2024-01-01")], [("authored-on", "lt2024-01-01")]),
        ("Task", [("owner", "Organization/a")], [("owner", "a")]),  # typed vs untyped reference
        ("Task", [("owner", "Organization/a")], [("owner", "https://x.org/fhir/Organization/a")]),
        ("Task", [("patient", "Patient/a")], [("patient:missing", "true")]),
        ("Task", [("patient:missing", "true")], [("patient:missing", "false")]),
        ("Task", [("status", "requested")], [("status", "requested"), ("status", "accepted")]),
    ],
)
def test_every_decision_of_the_sql_is_in_the_shape(
    res_type: str, first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    assert _shape(res_type, first)[0] != _shape(res_type, second)[0]


def test_a_reference_to_the_person_stands_as_the_person_condition_alone() -> None:
    """``Task?patient=Patient/a`` is ``patient_id IN ('a')`` and no reference criterion (the same
    rows: tests/search/test_search_http.py); other references keep their criterion."""
    shape, values = _shape("Task", [("patient", "Patient/a"), ("status", "requested")])
    assert (len(shape.criteria), len(shape.compartments)) == (1, 1)
    assert shape.criteria[0][1] == ("token", "status")
    assert values[shape.compartments[0].index] == ["a"]
    owner, _ = _shape("Task", [("owner", "Organization/a")])
    assert (len(owner.criteria), owner.compartments) == (1, ())
    absolute, _ = _shape("Task", [("patient", "https://x.org/fhir/Patient/a")])
    assert (len(absolute.criteria), absolute.compartments) == (1, ())
