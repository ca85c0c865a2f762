"""The planned index extraction gives exactly the rows of evaluating every parameter's
expression (``search.indexing``: plans per type and top-level elements, issue 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.search.indexing import extract_index_rows, generic_index_rows
from fhir_gateway.search.registry import params_for

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir-examples"


def _examples() -> list[dict[str, Any]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        body = json.loads(path.read_text())
        if body.get("resourceType") in STORED_TYPES:
            out.append(body)
    return out


@pytest.mark.parametrize("body", _examples(), ids=lambda b: f"{b['resourceType']}/{b.get('id')}")
def test_official_examples(body: dict[str, Any]) -> None:
    assert extract_index_rows(body) == generic_index_rows(body)


def _names(res_type: str) -> list[str]:
    """Element names the type's search paths start with, plus choice forms and strangers."""
    names = {"id", "meta", "text", "extension", "unknownElement"}
    for param in params_for(res_type).values():
        for path in param.paths:
            head = path.strip("()").split(".")
            names.add(head[1] if head[0] == res_type and len(head) > 1 else head[0].split(" ")[0])
    for name in list(names):
        names.update({name + "Boolean", name + "DateTime", name + "Quantity", name + "Reference", name + "x"})
    return sorted(names)


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(
        ["2024", "2024-02", "2024-02-29", "2024-02-29T10:00:00+01:00", "x", "Patient/p1", "#c", "c" * 300]
    ),
)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "system",
                    "code",
                    "value",
                    "reference",
                    "coding",
                    "text",
                    "start",
                    "end",
                    "display",
                    "family",
                    "given",
                    "unit",
                    "type",
                    "use",
                    "event",
                    "lastUpdated",
                    "tag",
                    "profile",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@st.composite
def _resources(draw: st.DrawFn) -> dict[str, Any]:
    res_type = draw(st.sampled_from(sorted(STORED_TYPES)))
    keys = draw(st.lists(st.sampled_from(_names(res_type)), max_size=8, unique=True))
    return {"resourceType": res_type, **{k: draw(_value) for k in keys}}


@settings(max_examples=400)
@given(_resources())
def test_any_resource(body: dict[str, Any]) -> None:
    try:
        expected = generic_index_rows(body)
    except Exception as exc:  # the same refusal (e.g. a code too long) both ways
        with pytest.raises(type(exc)):
            extract_index_rows(body)
        return
    assert extract_index_rows(body) == expected
