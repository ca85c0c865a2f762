"""Cells <-> canonical values (partner-formats/README.md, "Common rules").

Canonical values are what the model's templates see whatever the dialect: dates
``YYYY-MM-DD``, times ``HH:MM``, numbers as int (when whole) or float, codes translated
by the column's ConceptMap. An empty cell is absent (``None``).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from fhir_gateway.mapping import hooks
from fhir_gateway.mapping.spec import Column, Dialect


class CellError(ValueError):
    """A cell that breaks the contract; the message is the reason shown to the partner."""


def _human(fmt: str) -> str:
    return (
        fmt.replace("%d", "JJ")
        .replace("%m", "MM")
        .replace("%Y", "AAAA")
        .replace("%H", "HH")
        .replace("%M", "MM")
    )


_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _number(text: str, dialect: Dialect) -> int | float:
    cleaned = text.replace(" ", "").replace("\u00a0", "")
    if dialect.decimal != ".":
        if "." in cleaned:
            raise CellError(f"expected a decimal with '{dialect.decimal}' as decimal separator")
        cleaned = cleaned.replace(dialect.decimal, ".")
    if not _DECIMAL.fullmatch(cleaned):
        raise CellError("not a number")
    number = float(cleaned)
    if not math.isfinite(number):
        raise CellError("not a number (out of range)")
    return int(number) if number.is_integer() and "e" not in cleaned.lower() else number


@lru_cache(maxsize=8192)
def _date(text: str, fmt: str) -> str:
    """``YYYY-MM-DD`` of a date cell (files repeat their dates: parsed once each)."""
    try:
        return datetime.strptime(text, fmt).date().isoformat()
    except ValueError:
        raise CellError(f"not a valid date ({_human(fmt)})") from None


@lru_cache(maxsize=4096)
def _time(text: str, fmt: str) -> str:
    """``HH:MM`` of a time cell."""
    try:
        return datetime.strptime(text, fmt).strftime("%H:%M")
    except ValueError:
        raise CellError(f"not a valid time ({_human(fmt)})") from None


def parse_cell(column: Column, text: str, dialect: Dialect) -> Any:
    """The canonical value of ``text`` in ``column`` (None when empty), or CellError."""
    text = text.strip()
    if not text:
        return None
    if "\x00" in text:
        raise CellError("contains a NUL character")
    kind = column.type
    value: Any = text
    if kind == "date":
        value = _date(text, dialect.date)
    elif kind == "time":
        value = _time(text, dialect.time)
    elif kind == "decimal":
        value = _number(text, dialect)
    elif kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise CellError("not a whole number" + (" (too many digits)" if len(text) > 18 else ""))
        value = int(text)
    elif kind == "code" and column.value_map is not None:
        value = column.value_map.translate(text)
        if value is None:
            raise CellError(f"unknown code; accepted values: {column.value_map.accepted()}")
    if column.length is not None and len(text) != column.length:
        raise CellError(f"expected {column.length} characters")
    if column.pattern is not None and not _regex(column.pattern).fullmatch(text):
        raise CellError(f"does not match the expected form {column.pattern}")
    if isinstance(value, int | float) and column.minimum is not None and value < column.minimum:
        raise CellError(f"below the minimum {column.minimum:g}")
    if isinstance(value, int | float) and column.maximum is not None and value > column.maximum:
        raise CellError(f"above the maximum {column.maximum:g}")
    if column.check:
        reason = hooks.CELL_CHECKS[column.check](text)
        if reason:
            raise CellError(reason)
    return value


def format_cell(column: Column, value: Any, dialect: Dialect) -> str:
    """The cell text of a canonical ``value`` (export); empty for None."""
    if value is None or value == "":
        return ""
    kind = column.type
    if kind == "date":
        return date.fromisoformat(str(value)[:10]).strftime(dialect.date)
    if kind == "time":
        return datetime.strptime(str(value)[:5], "%H:%M").strftime(dialect.time)
    if kind == "decimal" and isinstance(value, int | float | Decimal):
        return format(Decimal(str(value)).normalize(), "f").replace(".", dialect.decimal)
    if kind == "code" and column.value_map is not None:
        return column.value_map.reverse(str(value)) or str(value)
    return str(value)
