"""FHIR dates as ranges (FHIR R4 search.html#date): a value stands for the whole interval
its precision implies; ``2026`` is [2026-01-01T00:00, 2026-12-31T23:59:59.999999].

Ranges are naive UTC datetimes (values without a zone are taken as UTC).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_MAX_US = timedelta(microseconds=1)


def _plus(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held at the calendar's ends (year 1 and 9999) instead of overflowing."""
    try:
        return moment + delta
    except OverflowError:
        return datetime.max if delta > timedelta(0) else datetime.min


def parse_date_range(value: str) -> tuple[datetime, datetime]:
    """``value`` -> (low, high) naive UTC; ValueError when it is not a FHIR date/dateTime/instant."""
    match = _DATE.match(value.strip())
    if not match:
        raise ValueError(f"not a FHIR date: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    y = int(year)
    if month is None:
        return datetime(y, 1, 1), _plus(datetime(y, 12, 31), timedelta(days=1) - _MAX_US)
    m = int(month)
    if day is None:
        last = calendar.monthrange(y, m)[1]
        return datetime(y, m, 1), _plus(datetime(y, m, last), timedelta(days=1) - _MAX_US)
    d = int(day)
    if hour is None:
        low = datetime(y, m, d)
        return low, _plus(low, timedelta(days=1) - _MAX_US)
    micro = int((fraction or ".0")[1:].ljust(6, "0")[:6])
    low = datetime(y, m, d, int(hour), int(minute), int(second or 0), micro)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        low = _plus(low, -sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    if second is None:
        high = _plus(low, timedelta(minutes=1) - _MAX_US)
    elif fraction is None:
        high = _plus(low, timedelta(seconds=1) - _MAX_US)
    else:
        high = low
    return low, high
