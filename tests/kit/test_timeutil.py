"""HTTP dates (RFC 9110 section 5.6.7, IMF-fixdate) whatever the moment's zone or the locale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_gateway.kit.timeutil import fhir_instant, http_date

ZONES = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=400)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31)), ZONES)
def test_http_dates_are_imf_fixdates_in_gmt(moment: datetime, zone: timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    assert http_date(aware) == format_datetime(aware.astimezone(UTC), usegmt=True)


def test_a_known_date() -> None:
    assert http_date(datetime(2026, 11, 26, 8, 5, 3, 250000, tzinfo=UTC)) == "Thu, 26 Nov 2026 08:05:03 GMT"


@settings(max_examples=300)
@given(st.lists(st.tuples(st.datetimes(min_value=datetime(1971, 1, 1)), ZONES), min_size=1, max_size=4))
def test_fhir_instants_are_utc_with_milliseconds_whatever_came_before(
    moments: list[tuple[datetime, timezone]],
) -> None:
    """The text kept for the last moment is given only for an equal moment (the same instant)."""
    for moment, zone in [*moments, *moments[:1]]:
        aware = moment.replace(tzinfo=zone)
        expected = aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert fhir_instant(aware) == expected
        assert expected.endswith("Z")
