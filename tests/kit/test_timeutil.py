"""HTTP dates (RFC 9110 section 5.6.7, IMF-fixdate) whatever the moment's zone or the locale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.kit.timeutil import http_date

ZONES = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=400)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31)), ZONES)
def test_http_dates_are_imf_fixdates_in_gmt(moment: datetime, zone: timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    assert http_date(aware) == format_datetime(aware.astimezone(UTC), usegmt=True)


def test_a_known_date() -> None:
    assert http_date(datetime(2026, 11, 26, 8, 5, 3, 250000, tzinfo=UTC)) == "Thu, 26 Nov 2026 08:05:03 GMT"
