"""``kit.query_string.urlencode`` writes exactly what ``urllib.parse.urlencode`` writes;
``parse_pairs`` reads what Starlette's ``QueryParams`` reads."""

from __future__ import annotations

import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from fhir_gateway.kit.query_string import parse_pairs, urlencode

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


QUERY_BYTES = st.binary(max_size=40) | st.sampled_from(
    [
        b"patient=Patient/0192-ab&status=requested,accepted&_count=20",
        b"a=1&&b=2&c&=d&e=",
        b"name=a+b&x=%2F%C3%A9&y=%zz",
        b"&",
        b"",
        b"k=v=w",
        b"\xe9t\xe9=\xff",
        b"a;b=c",
    ]
)


@settings(max_examples=400)
@given(QUERY_BYTES | st.lists(st.tuples(TEXT, TEXT), max_size=5).map(lambda p: urlencode(p).encode()))
def test_pairs_are_starlettes(query: bytes) -> None:
    assert parse_pairs(query) == QueryParams(query).multi_items()
