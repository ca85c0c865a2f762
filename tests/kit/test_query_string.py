"""``kit.query_string.urlencode`` writes exactly what ``urllib.parse.urlencode`` writes."""

from __future__ import annotations

import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.kit.query_string import urlencode

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["Patient/0192-ab", "requested,accepted", "a b", "x=y&z", "é", "", "%2F", "+", "~._-"]
)
SAFES = st.sampled_from(["", ":/,|*", "/", " ", "%", "é"])


@settings(max_examples=400)
@given(st.lists(st.tuples(TEXT, TEXT), max_size=6), SAFES)
def test_same_as_urllib(pairs: list[tuple[str, str]], safe: str) -> None:
    assert urlencode(pairs, safe=safe) == urllib.parse.urlencode(pairs, safe=safe)


def test_mappings_and_non_text_values() -> None:
    query = {"_count": 20, "patient": "Patient/p 1", "flag": True}
    assert urlencode(query) == urllib.parse.urlencode(query)
