"""Repeated search criteria are parsed once (``search.parser.known_criterion``), with the same
answers and the same refusals as a first parse (FHIR R4 search.html)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.search import parser
from fhir_gateway.search.parser import PARSED_TEXT_KEPT, known_criterion, parse_criterion, parse_search

CRITERIA = st.sampled_from(
    [
        ("Task", "status", "requested,accepted"),
        ("Task", "patient", "Patient/0192-ab"),
        ("Task", "authored-on", "ge2024-01-01"),
        ("Task", "code", "http://loinc.org|1234"),
        ("Task", "patient.identifier", "urn:oid:1.2|x"),
        ("CarePlan", "subject:Patient", "p1"),
        ("Task", "identifier:missing", "true"),
        ("Task", "priority:not", "routine"),
        ("Patient", "name:contains", "dup"),
        ("Task", "unknown", "x"),
    ]
)


@settings(max_examples=100)
@given(st.lists(CRITERIA, min_size=1, max_size=8))
def test_a_repeated_criterion_is_what_a_first_parse_gives(criteria: list[tuple[str, str, str]]) -> None:
    for res_type, name, raw in criteria:
        assert known_criterion(res_type, name, raw) == parse_criterion(res_type, name, raw)


def test_a_repeated_criterion_is_parsed_once() -> None:
    first = known_criterion("Task", "status", "requested,in-progress")
    assert first is not None
    assert known_criterion("Task", "status", "requested,in-progress") is first
    request = parse_search(
        "Task", [("status", "requested,in-progress")], default_count=20, max_count=100, strict=False
    )
    assert request.criteria == [first]


def test_refusals_are_raised_at_every_parse() -> None:
    for _ in range(2):
        with pytest.raises(BadRequest, match="modifier ':nope' is not supported"):
            known_criterion("Task", "status:nope", "requested")
        with pytest.raises(BadRequest, match=":missing takes true or false"):
            known_criterion("Task", "identifier:missing", "maybe")


def test_unknown_parameters_and_long_criteria_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = parser.Lru[parser.Criterion](8)
    monkeypatch.setattr(parser, "_parsed", kept)
    assert known_criterion("Task", "unknown", "x") is None
    long_value = "Patient/" + "a" * PARSED_TEXT_KEPT
    assert known_criterion("Task", "patient", long_value) is not None
    assert len(kept) == 0
    known_criterion("Task", "status", "requested")
    assert len(kept) == 1
