"""Instants as FHIR writes them (FHIR R4 datatypes.html#instant)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def fhir_instant(moment: datetime) -> str:
    """``2026-11-24T20:00:00.123Z``: a FHIR instant in UTC with milliseconds.

    The last moment's text is kept: a transaction's entries, and a batch of audit events, share
    one moment (an equal aware datetime is the same instant, so the same text)."""
    global _last_instant
    last = _last_instant
    if last[0] == moment:
        return last[1]
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _last_instant = (moment, text)
    return text


_last_instant: tuple[datetime | None, str] = (None, "")  # replaced whole: safe across threads


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate (section 5.6.7), for Last-Modified: English names whatever the
    process's locale (``strftime``'s ``%a`` and ``%b`` follow it), and a third of its cost."""
    t = moment.astimezone(UTC)
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d}"
        f" {t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )
