"""Search value escaping (FHIR R4 search.html#escaping): ``\\,`` ``\\|`` ``\\$`` and ``\\\\``
keep a separator or a backslash in a value."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.search.values import split_unescaped, unescape

# values made mostly of the characters escaping is about
TEXT = st.text(st.sampled_from(list("ab,|$\\ é")), max_size=12)


def _split_reference(text: str, separator: str) -> list[str]:
    """Character by character: a backslash keeps the next character (separator or not) in
    the part, with its backslash; a trailing backslash stays."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current, escaped = current + "\\" + char, False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts, current = [*parts, current], ""
        else:
            current += char
    return [*parts, current + ("\\" if escaped else "")]


@settings(max_examples=500, deadline=None)
@given(text=TEXT, separator=st.sampled_from([",", "|", "$"]))
def test_a_value_is_split_on_its_unescaped_separators_only(text: str, separator: str) -> None:
    assert split_unescaped(text, separator) == _split_reference(text, separator)


@settings(max_examples=500, deadline=None)
@given(text=TEXT)
def test_unescaping_drops_the_backslash_before_a_special_character(text: str) -> None:
    assert unescape(text) == re.sub(r"\\([,|$\\])", r"\1", text)


def test_examples() -> None:
    assert split_unescaped("requested,accepted", ",") == ["requested", "accepted"]
    assert split_unescaped("a\\,b,c", ",") == ["a\\,b", "c"]
    assert split_unescaped("urn:x|A\\|1", "|") == ["urn:x", "A\\|1"]
    assert unescape("A\\|1") == "A|1"
    assert unescape("plain") == "plain"
