"""FHIR dates and Periods as naive UTC bounds (FHIR R4 datatypes.html#dateTime, #Period).

A Period is closed at both ends in FHIR; a bound given with day (or month, year)
precision covers the whole day, so the stored end is exclusive: ``2015-02-01`` ends at
``2015-02-02T00:00``. Instants without a zone are read as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def _parse(value: str) -> tuple[datetime, timedelta] | None:
    """The earliest instant of ``value`` and its precision step, or None if unreadable."""
    text = value.strip()
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1)
            return start, datetime(int(text) + 1, 1, 1) - start
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            start = datetime(year, month, 1)
            nxt = datetime(year + (month == 12), month % 12 + 1, 1)
            return start, nxt - start
        if len(text) == 10:
            return datetime.fromisoformat(text), timedelta(days=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment, timedelta(0)


def period_bounds(period: Any) -> tuple[datetime | None, datetime | None]:
    """``(start, exclusive end)`` of a FHIR Period; None where open or unreadable."""
    if not isinstance(period, dict):
        return None, None
    start = end = None
    if isinstance(period.get("start"), str):
        parsed = _parse(period["start"])
        start = parsed[0] if parsed else None
    if isinstance(period.get("end"), str):
        parsed = _parse(period["end"])
        if parsed is not None:
            try:
                end = parsed[0] + parsed[1] if parsed[1] else parsed[0]
            except OverflowError:  # ends on the calendar's last day (9999-12-31): no end
                end = None
    return start, end


def intersect(
    outer: tuple[datetime | None, datetime | None], inner: tuple[datetime | None, datetime | None]
) -> tuple[datetime | None, datetime | None]:
    """The intersection of two periods (a nested provision lives within its parent)."""
    starts = [s for s in (outer[0], inner[0]) if s is not None]
    ends = [e for e in (outer[1], inner[1]) if e is not None]
    return (max(starts) if starts else None, min(ends) if ends else None)


def reference_parts(ref: Any) -> tuple[str, str] | None:
    """``("Organization", "x")`` from a Reference ``{"reference": ".../Organization/x"}``."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    text = ref["reference"].split("/_history/")[0]
    if text.startswith("#"):
        return None
    parts = text.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None
    return parts[-2], parts[-1]
