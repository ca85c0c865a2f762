"""Engine pieces without a database: CSV dialects, hooks, templates (issue 5)."""

from __future__ import annotations

import io
from datetime import date, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_gateway.mapping import hooks
from fhir_gateway.mapping.csvio import CsvSource, EncodingProblem, detect_encoding
from fhir_gateway.mapping.spec import load_format, mappings_root
from fhir_gateway.mapping.template import MISSING, merge, render
from fhir_gateway.mapping.values import format_cell, parse_cell

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("é".encode(), "utf-8"),
        (b"\xef\xbb\xbfa", "utf-8-sig"),
        ("é".encode("cp1252"), "cp1252"),
        (b"ab" + "é".encode()[:1], "utf-8"),  # a character cut by the sample
    ],
)
def test_encoding_detection(data: bytes, expected: str) -> None:
    assert detect_encoding(data, ["utf-8", "windows-1252"], cut=data.startswith(b"ab")) == expected


def test_encoding_not_accepted() -> None:
    with pytest.raises(EncodingProblem):
        detect_encoding("é".encode("cp1252"), ["utf-8"])


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_quotes_newlines_blank_lines(newline: str) -> None:
    text = newline.join(["a;b;c", 'x;"1;2";"say ""hi"""', "", 'y;"multi' + newline + 'line";', "", ""])
    source = CsvSource(io.BytesIO(text.encode("cp1252")), ";", ["utf-8", "windows-1252"], None)
    assert source.header == ["a", "b", "c"]
    rows = list(source.rows())
    assert [r.cells for r in rows] == [
        {"a": "x", "b": "1;2", "c": 'say "hi"'},
        {"a": "y", "b": "multi" + newline + "line", "c": ""},
    ]
    assert [r.line for r in rows] == [2, 5]


def test_nir_key() -> None:
    assert hooks.nir_key("178066942012368") is None
    assert "invalid NIR key 00" in str(hooks.nir_key("178066942012300"))
    corsica = "180072A012345"
    key = 97 - int(corsica.replace("2A", "19")) % 97
    assert hooks.nir_key(f"{corsica}{key:02d}") is None
    assert hooks.nir_key("12345") is not None


def test_visit_after_midnight() -> None:
    values = {"date": "2025-11-19", "start": "21:30", "end": "00:15"}
    args = {"date": "date", "start": "start", "end": "end"}
    assert hooks.hook_end_datetime(values, args, PARIS) == "2025-11-20T00:15:00+01:00"
    values["end"] = "22:00"
    assert hooks.hook_end_datetime(values, args, PARIS) == "2025-11-19T22:00:00+01:00"


@pytest.mark.parametrize(
    ("ratings", "status", "expected"),
    [
        ((4, 4, 3), "completed", None),
        ((2, 3, 3), "completed", "asap"),
        ((1, 5, 5), "completed", "urgent"),
        ((1, 1, 1), "accepted", None),
        ((None, None, None), "completed", None),
    ],
)
def test_rating_alert(ratings: tuple[int | None, ...], status: str, expected: str | None) -> None:
    values = {"s": status, "a": ratings[0], "b": ratings[1], "c": ratings[2]}
    args = {
        "status_field": "s",
        "status": "completed",
        "ratings": ["a", "b", "c"],
        "threshold": 2,
        "urgent_at": 1,
    }
    assert hooks.hook_rating_alert(values, args, PARIS) == expected


def test_render_drops_absent_values() -> None:
    template = {"a": "{x}", "b": {"c": "{y}"}, "d": [{"$when": "z", "e": 1}, "id-{x}"], "n": "{n}"}
    assert render(template, {"x": "1", "n": 0}) == {"a": "1", "d": ["id-1"], "n": 0}
    assert render({"a": "{y}"}, {}) is MISSING


def test_merge_keeps_other_items_and_preserved_elements() -> None:
    stored = {
        "id": "1",
        "meta": {"versionId": "3"},
        "status": "completed",
        "name": "old",
        "participant": [{"member": {"reference": "A"}, "x": 1}, {"member": {"reference": "B"}}],
    }
    new = {"status": "requested", "participant": [{"member": {"reference": "A"}, "x": 2}]}
    merged = merge(
        stored, new, mode="replace", lists={"participant": ["member.reference"]}, preserve=["status"]
    )
    assert merged == {
        "id": "1",
        "meta": {"versionId": "3"},
        "status": "completed",
        "participant": [{"member": {"reference": "A"}, "x": 2}, {"member": {"reference": "B"}}],
    }
    patched = merge(stored, {"name": "new"}, mode="patch", lists={}, preserve=[])
    assert patched["name"] == "new"
    assert patched["participant"] == stored["participant"]


def test_problems_listed_are_capped_but_all_counted() -> None:
    from fhir_gateway.mapping.report import MAX_LISTED, Problem, Summary

    summary = Summary("f")
    summary.add([Problem(n, "c", "v", "bad") for n in range(2, MAX_LISTED + 12)])
    assert summary.error_count == MAX_LISTED + 10
    assert len(summary.errors) == MAX_LISTED
    assert summary.problems[-1].severity == "information"


VALUES = {
    "date": st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    "time": st.times(time(0, 0), time(23, 59)).map(lambda t: t.strftime("%H:%M")),
    "decimal": st.decimals(Decimal("0"), Decimal("100000"), places=2).map(
        lambda d: int(d) if d == d.to_integral() else float(d)
    ),
}


@pytest.mark.parametrize("name", ["saad-interventions", "domicile-connect-interventions", "mdph-decisions"])
@given(data=st.data())
def test_cells_survive_format_then_parse(name: str, data: st.DataObject) -> None:
    """Every canonical value written by an export reads back the same (hypothesis)."""
    fmt = load_format(mappings_root(), name)
    for column in fmt.columns:
        if column.type in VALUES:
            value = data.draw(VALUES[column.type])
        elif column.value_map is not None:
            value = data.draw(st.sampled_from(sorted(column.value_map.forward.values())))
        else:
            continue
        assert parse_cell(column, format_cell(column, value, fmt.dialect), fmt.dialect) == value
