"""Hypothesis: the search parser and the Bundle reader never crash on hostile input.

Whatever the query, the answer is a SearchRequest or a FhirError (rendered as a 400
OperationOutcome), never another exception (issue 11).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.fhir.bundles import parse_entries
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.search.parser import parse_search

NAMES = st.sampled_from(
    [
        "status",
        "patient",
        "patient.identifier",
        "authored-on",
        "_sort",
        "_count",
        "_include",
        "_revinclude:iterate",
        "_has:Task:patient:status",
        "code:text",
        "owner:Organization",
        "identifier:missing",
        "_summary",
        "_elements",
        "_offset",
        "_total",
        "period",
        "subject.name",
        "unknown",
        "_id",
        "priority:not",
        "description:contains",
    ]
)
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "ge2026",
            "lt2026-01-01T00:00:00Z",
            "a|b",
            "a\\,b,c",
            "Task:patient",
            "-_id,status",
            "true",
            "0",
            "999999999",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(NAMES, st.text(max_size=20)), VALUES), max_size=6), st.booleans())
def test_search_parser_never_crashes(items: list[tuple[str, str]], strict: bool) -> None:
    status = 200
    try:
        request = parse_search("Task", items, default_count=20, max_count=100, strict=strict)
    except FhirError as exc:
        status = exc.status
    assert 200 <= status < 500
    if status == 200:
        assert 0 <= request.count <= 100


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["resourceType", "type", "entry"]), JSON, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["request", "resource", "fullUrl"]), JSON), max_size=3),
)
def test_bundle_reader_never_crashes(bundle: dict[str, object], entries: list[dict[str, object]]) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", **bundle}
    if entries:
        bundle["entry"] = entries
    status = 200
    try:
        parse_entries(bundle, 100)
    except FhirError as exc:
        status = exc.status
    assert status < 500
