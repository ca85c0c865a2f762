"""Activity indicators (issue 8): a MeasureReport of Measure/activity-indicators, and CSV,
counting what the caller may see."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.operations.support import SAAD, TASK_CODES, permit, put

INDICATORS = "https://fhir-gateway.org/fhir/CodeSystem/activity-indicator"


def _today() -> date:
    return datetime.now(UTC).date()


def _day(anchor: date, offset: int) -> str:
    return (anchor + timedelta(days=offset)).isoformat()


def _data(fhir: TestClient, anchor: date) -> None:
    """The people, plans and Tasks, dated from ``anchor`` (one day taken once, so that a run
    crossing midnight does not date some of them from one day and some from the next)."""

    def day(offset: int) -> str:
        return _day(anchor, offset)

    for pid in ("p1", "p2", "p3"):
        put(fhir, {"resourceType": "Patient", "id": pid})
    plans = [
        ("plan-p1", "p1", "active", day(-100), None, day(-100)),  # followed, not new in the period
        ("plan-p2", "p2", "active", day(-5), day(200), day(-5)),  # followed and new
        ("plan-p3", "p3", "completed", day(-300), day(-200), day(-300)),  # ended before the period
    ]
    for pid_plan, pid, status, start, end, created in plans:
        period = {"start": start, **({"end": end} if end else {})}
        subject = {"reference": f"Patient/{pid}"}
        plan = {"id": pid_plan, "status": status, "subject": subject, "period": period, "created": created}
        put(fhir, {"resourceType": "CarePlan", "intent": "plan", **plan})
    alert = {"coding": [{"system": TASK_CODES, "code": "alerte-vigilance"}]}
    orientation = {"coding": [{"system": TASK_CODES, "code": "suivi-orientation"}]}
    tasks: list[dict[str, Any]] = [
        {"id": "a-open", "for": "p1", "status": "requested", "code": alert},
        {"id": "a-done", "for": "p2", "status": "completed", "code": alert,
         "executionPeriod": {"start": day(-2), "end": day(-1)}},
        {"id": "o-wait-10", "for": "p1", "status": "requested", "code": orientation, "authoredOn": day(-10)},
        {"id": "o-wait-40", "for": "p2", "status": "accepted", "code": orientation, "authoredOn": day(-40)},
        {"id": "o-admitted", "for": "p2", "status": "completed", "code": orientation, "authoredOn": day(-20),
         "businessStatus": {"coding": [{"code": "ADMISSION"}]}},
    ]  # fmt: skip
    for t in tasks:
        put(
            fhir,
            {"resourceType": "Task", "intent": "order", **t, "for": {"reference": f"Patient/{t['for']}"}},
        )


def _groups(report: dict[str, Any]) -> dict[str, tuple[int, float | None]]:
    out = {}
    for g in report["group"]:
        code = g["code"]["coding"][0]
        assert code["system"] == INDICATORS
        out[code["code"]] = (g["population"][0]["count"], g.get("measureScore", {}).get("value"))
    return out


def _period(anchor: date) -> dict[str, str]:
    """The thirty days before ``anchor`` to the day after it. The alert without ``authoredOn``
    counts on its first version's date, which the server takes from its own clock: ``anchor``
    or, in a run crossing midnight, the day after; both are in the period."""
    return {"periodStart": _day(anchor, -30), "periodEnd": _day(anchor, 1)}


def test_measure_report_of_a_period(fhir: TestClient) -> None:
    anchor = _today()
    _data(fhir, anchor)
    period = _period(anchor)
    response = fhir.get("/fhir/Measure/activity-indicators/$evaluate-measure", params=period)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["resourceType"] == "MeasureReport"
    assert report["type"] == "summary"
    assert report["measure"] == "https://fhir-gateway.org/fhir/Measure/activity-indicators"
    assert report["period"] == {"start": period["periodStart"], "end": period["periodEnd"]}
    figures = _groups(report)
    assert figures["people-followed"] == (2, None)
    assert figures["new-plans"] == (1, None)
    assert figures["alerts-raised"] == (2, None)  # no authoredOn: the first version's date
    assert figures["alerts-handled"] == (1, None)
    # authored 10 and 40 days before the anchor, waiting to the end of the period (the day after
    # the anchor): 12 and 42 days
    assert figures["orientations-waiting"] == (2, 27.0)
    assert figures["orientation-delay-max"] == (2, 42.0)
    measure = fhir.get("/fhir/Measure/activity-indicators").json()
    assert measure["resourceType"] == "Measure"
    assert {g["code"]["coding"][0]["code"] for g in measure["group"]} == set(figures)


def test_csv_with_a_header_row(fhir: TestClient) -> None:
    anchor = _today()
    _data(fhir, anchor)
    period = _period(anchor)
    response = fhir.get(
        "/fhir/Measure/activity-indicators/$evaluate-measure", params={**period, "_format": "csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["indicator", "display", "count", "score", "unit", "period_start", "period_end"]
    by_code = {r["indicator"]: r for r in rows}
    assert by_code["people-followed"]["count"] == "2"
    assert by_code["orientations-waiting"]["unit"] == "d"
    accept = fhir.get(
        "/fhir/Measure/activity-indicators/$evaluate-measure", params=period, headers={"Accept": "text/csv"}
    )
    assert accept.text == response.text


def test_partner_counts_only_what_consent_lets_it_see(fhir: TestClient, make_client: ClientFactory) -> None:
    anchor = _today()
    _data(fhir, anchor)
    permit(fhir, "p1", SAAD, "c1")
    saad = make_client("system/*.rs", organization=SAAD)
    period = _period(anchor)
    figures = _groups(saad.get("/fhir/Measure/activity-indicators/$evaluate-measure", params=period).json())
    assert figures["people-followed"] == (1, None)
    assert figures["alerts-raised"] == (1, None)
    assert figures["orientations-waiting"][0] == 1
    assert fhir.get("/fhir/Measure/activity-indicators/$evaluate-measure").status_code == 400
    bad = {"periodStart": _day(anchor, 0), "periodEnd": _day(anchor, -30)}
    assert fhir.get("/fhir/Measure/activity-indicators/$evaluate-measure", params=bad).status_code == 400
