"""A JSON body's nesting limit (issue 2: a body nested too deep is refused with 400, not a crash)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.kit.jsonutil import loads_object

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=3
)  # NUL is refused on its own
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=40,
)


def _depth(node: Any) -> int:
    """Levels of containers in ``node`` (a container is level 1), by plain recursion."""
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(TEXT, JSON, max_size=3), limit=st.integers(1, 8))
def test_a_body_is_refused_exactly_when_nested_deeper_than_the_limit(
    body: dict[str, Any], limit: int
) -> None:
    data = orjson.dumps(body)
    if _depth(body) > limit:
        with pytest.raises(BadRequest, match="nested deeper"):
            loads_object(data, max_depth=limit)
    else:
        assert loads_object(data, max_depth=limit) == body


def test_the_limit_counts_the_object_itself() -> None:
    assert loads_object(b'{"a": [{"b": 1}]}', max_depth=3) == {"a": [{"b": 1}]}
    with pytest.raises(BadRequest, match="nested deeper than 2"):
        loads_object(b'{"a": [{"b": 1}]}', max_depth=2)
