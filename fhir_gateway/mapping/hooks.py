"""Named semantic hooks that format definitions reference (DESIGN.md, Mapping).

Generic rules only, never a partner's format: a YAML file names them (``check: nir_key``,
``hook: end_datetime``...) and passes its own fields as arguments.

- cell checks: text -> reason or None;
- derivations: (row values, arguments, timezone) -> a new value (None: absent);
- row checks: (row values, arguments) -> (field, reason) or None.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

Values = dict[str, Any]


def nir_key(text: str) -> str | None:
    """INS-NIR (partner-formats §1 ins_nir): 15 characters, key = 97 - (NIR mod 97), 2A->19, 2B->18."""
    nir = text.strip().upper()
    if len(nir) != 15:
        return "a NIR has 15 characters (13 + a 2-digit key)"
    body, key = nir[:13], nir[13:]
    number = body.replace("2A", "19").replace("2B", "18")
    if not (number + key).isascii() or not number.isdigit() or not key.isdigit():
        return "a NIR has digits only (2A/2B allowed for Corsica)"
    expected = 97 - int(number) % 97
    if int(key) != expected:
        return f"invalid NIR key {key} (expected {expected:02d})"
    return None


CELL_CHECKS: dict[str, Callable[[str], str | None]] = {"nir_key": nir_key}


@lru_cache(maxsize=65536)
def _instant(day: str, hhmm: str, tz: ZoneInfo, plus_days: int = 0) -> str:
    moment = datetime.combine(
        date.fromisoformat(day) + timedelta(days=plus_days), datetime.strptime(hhmm, "%H:%M").time()
    )
    return moment.replace(tzinfo=tz).isoformat()


def hook_datetime(values: Values, args: dict[str, Any], tz: ZoneInfo) -> Any:
    """A FHIR dateTime from a date and an ``HH:MM`` time in the format's timezone."""
    day, time = values.get(args["date"]), values.get(args["time"])
    if day and not time and args.get("or_date"):
        return day
    return _instant(day, time, tz) if day and time else None


def hook_end_datetime(values: Values, args: dict[str, Any], tz: ZoneInfo) -> Any:
    """The end of a visit: on the next day when its time is before the start (after midnight)."""
    day, start, end = values.get(args["date"]), values.get(args["start"]), values.get(args["end"])
    if not day or not end:
        return None
    return _instant(day, end, tz, 1 if start and end < start else 0)


def hook_in(values: Values, args: dict[str, Any], _tz: ZoneInfo) -> Any:
    """True when ``field`` holds one of ``values`` (absent otherwise)."""
    return True if values.get(args["field"]) in {str(v) for v in args["values"]} else None


def hook_all(values: Values, args: dict[str, Any], _tz: ZoneInfo) -> Any:
    """True when every named field is present and true-ish."""
    return True if all(values.get(name) for name in args["fields"]) else None


def hook_any(values: Values, args: dict[str, Any], _tz: ZoneInfo) -> Any:
    """True when some named field is present and true-ish."""
    return True if any(values.get(name) for name in args["fields"]) else None


def hook_table(values: Values, args: dict[str, Any], _tz: ZoneInfo) -> Any:
    """The entry of ``table`` for the value of ``field`` (absent when none)."""
    value = values.get(args["field"])
    return None if value is None else (args["table"] or {}).get(str(value))


def hook_rating_alert(values: Values, args: dict[str, Any], _tz: ZoneInfo) -> Any:
    """Vigilance priority (partner-formats §3): a ``status`` visit with a rating <= ``threshold``
    gives ``asap``, ``urgent`` when some rating is <= ``urgent_at``; otherwise absent."""
    if values.get(args["status_field"]) != args["status"]:
        return None
    ratings = [values[name] for name in args["ratings"] if values.get(name) is not None]
    if not ratings or min(ratings) > args.get("threshold", 2):
        return None
    return "urgent" if min(ratings) <= args.get("urgent_at", 1) else "asap"


DERIVATIONS: dict[str, Callable[[Values, dict[str, Any], ZoneInfo], Any]] = {
    "datetime": hook_datetime,
    "end_datetime": hook_end_datetime,
    "in": hook_in,
    "all": hook_all,
    "any": hook_any,
    "rating_alert": hook_rating_alert,
    "table": hook_table,
}


def check_required_when(values: Values, args: dict[str, Any]) -> tuple[str, str] | None:
    """``field`` is required when every ``when`` field holds one of the given values."""
    for name, wanted in (args.get("when") or {}).items():
        accepted = {str(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
        if str(values.get(name)) not in accepted:
            return None
    if values.get(args["field"]) in (None, ""):
        return args["field"], args.get("reason", "required here")
    return None


def check_forbidden_when(values: Values, args: dict[str, Any]) -> tuple[str, str] | None:
    """``field`` must stay empty unless every ``when`` field holds one of the given values."""
    if values.get(args["field"]) in (None, ""):
        return None
    for name, wanted in (args.get("when") or {}).items():
        accepted = {str(v) for v in (wanted if isinstance(wanted, list) else [wanted])}
        if str(values.get(name)) not in accepted:
            return args["field"], args.get("reason", "not allowed here")
    return None


ROW_CHECKS: dict[str, Callable[[Values, dict[str, Any]], tuple[str, str] | None]] = {
    "required_when": check_required_when,
    "forbidden_when": check_forbidden_when,
}
