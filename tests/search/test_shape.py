"""Search shapes (fhir_gateway/search/shape.py): equal exactly when the SQL is the same."""

from __future__ import annotations

import copy
import pickle

import pytest

from fhir_gateway.search.parser import parse_search
from fhir_gateway.search.shape import Literals, Slot, WhereShape, where_shape


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


def test_with_other_criteria_the_persons_reference_is_the_person_condition_alone() -> None:
    """``Task?patient=Patient/a&status=...`` is ``patient_id IN ('a')`` and the status criterion,
    tested on each of the person's rows (the same rows: tests/search/test_search_http.py). Alone,
    the reference criterion stays beside the person condition; other references keep theirs."""
    shape, values = _shape("Task", [("patient", "Patient/a"), ("status", "requested")])
    assert (len(shape.criteria), len(shape.compartments), shape.per_row) == (1, 1, True)
    assert shape.criteria[0][1] == ("token", "status")
    assert values[shape.compartments[0].index] == ["a"]
    alone, _ = _shape("CarePlan", [("subject", "Patient/a")])
    assert (len(alone.criteria), len(alone.compartments), alone.per_row) == (1, 1, False)
    owner, _ = _shape("Task", [("owner", "Organization/a"), ("status", "requested")])
    assert (len(owner.criteria), owner.compartments, owner.per_row) == (2, (), False)
    absolute, _ = _shape("Task", [("patient", "https://x.org/fhir/Patient/a"), ("status", "requested")])
    assert (len(absolute.criteria), absolute.compartments, absolute.per_row) == (2, (), False)


def test_on_postgresql_a_persons_rows_are_read_first_and_tested_one_by_one() -> None:
    """The other criteria of a search of one person's rows stay per-row tests (``OFFSET 0``):
    a generic plan that joined them instead hashed every status row of the type (24 ms)."""
    from sqlalchemy import select, true
    from sqlalchemy.dialects import postgresql

    from fhir_gateway.search.compiler import where_clauses
    from fhir_gateway.storage.tables import resource

    def sql(query: list[tuple[str, str]], *, drive: bool = False) -> str:
        shape, _ = _shape("Task", query)
        conditions = where_clauses(shape, lambda _row, _type: true(), drive=drive)
        return str(select(resource.c.res_id).where(*conditions).compile(dialect=postgresql.dialect()))

    person = sql([("patient", "Patient/a"), ("status", "requested")])
    assert "idx_reference" not in person
    assert "patient_id IN" in person
    assert "OFFSET 0" in person
    assert "OFFSET 0" not in sql([("patient", "Patient/a"), ("status", "requested")], drive=True)  # SQLite
    assert "OFFSET 0" not in sql([("owner", "Organization/a"), ("status", "requested")])


def test_a_slot_is_one_object_per_index_and_does_not_change() -> None:
    assert Slot(3) is Slot(3)
    assert Slot(3) != Slot(4)
    assert Slot(3).name == "q3"
    assert copy.deepcopy(Slot(3)) is Slot(3)
    assert pickle.loads(pickle.dumps(Slot(3))) is Slot(3)
    with pytest.raises(AttributeError):
        Slot(3).index = 4
    first, _ = _shape("Task", [("patient", "Patient/a"), ("status", "requested")])
    second, _ = _shape("Task", [("patient", "Patient/b"), ("status", "done")])
    assert first == second
    assert hash(first) == hash(second)
