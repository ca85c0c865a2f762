"""``GET [base]/Measure/activity-indicators/$evaluate-measure?periodStart=D&periodEnd=D`` (issue 8).

FHIR R4 measure-operation-evaluate-measure.html and measurereport.html: the activity of a
period as a ``summary`` MeasureReport of ``Measure/activity-indicators`` (its definition is
``profiles/Measure/activity-indicators.json``, served at ``GET [base]/Measure/activity-indicators``),
one ``group`` per indicator (code from ``CodeSystem/activity-indicator``, the count as the
initial population, ``measureScore`` in days for delays). With ``_format=csv`` (or
``Accept: text/csv``) the same figures as CSV, one row per indicator under a header row.

The figures count what the caller may see: the resources come from ordinary searches under
its scopes and the persons' consent (``fhir.collect``), so a partner's indicators cover the
people who let it in. Statuses are today's (a Task's state at the end of a past period is
not reconstructed from history); "raised" falls back to the first version's date.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table

from fhir_gateway.fhir.collect import all_matches
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.operations.worklists import OPEN_STATUSES, TASK_CODES
from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.search.dates import parse_date_range
from fhir_gateway.storage import repository
from fhir_gateway.validation.registry import default_folder

MEASURE = "https://fhir-gateway.org/fhir/Measure/activity-indicators"
INDICATORS = "https://fhir-gateway.org/fhir/CodeSystem/activity-indicator"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
CSV_HEADER = ["indicator", "display", "count", "score", "unit", "period_start", "period_end"]
_DISPLAY = {
    "people-followed": "Personnes suivies",
    "new-plans": "Nouveaux plans",
    "alerts-raised": "Alertes de vigilance levées",
    "alerts-handled": "Alertes de vigilance traitées",
    "orientations-waiting": "Orientations en attente d'admission",
    "orientation-delay-max": "Délai d'attente maximal d'une orientation (jours)",
}


@cache
def measure_definition(folder: Path | None = None) -> bytes:
    """The Measure resource of the indicators (from ``profiles/Measure``)."""
    return (Path(folder or default_folder()) / "Measure" / "activity-indicators.json").read_bytes()


def _range(value: Any) -> tuple[datetime, datetime] | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_date_range(value)
    except ValueError:
        return None


def _period(params: dict[str, str]) -> tuple[datetime, datetime, str, str]:
    start, end = params.get("periodStart"), params.get("periodEnd")
    if not start or not end:
        raise BadRequest(
            "$evaluate-measure needs periodStart and periodEnd (dates)", expression=["periodStart"]
        )
    low, high = _range(start), _range(end)
    if low is None or high is None or low[0] > high[1]:
        raise BadRequest(
            "periodStart and periodEnd must be dates, the start first", expression=["periodStart"]
        )
    return low[0], high[1], start, end


def _within(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment <= end


def _first(body: dict[str, Any], *paths: tuple[str, ...]) -> datetime | None:
    for path in paths:
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        found = _range(value)
        if found is not None:
            return found[0]
    return None


def figures(ctx: Ctx, start: datetime, end: datetime) -> dict[str, tuple[int, float | None]]:
    """(count, score in days or None) per indicator."""
    followed: set[str] = set()
    new_plans = 0
    for plan in all_matches(ctx, "CarePlan", [("status", "active,on-hold,completed")]):
        period = plan.get("period") or {}
        began, ended = _range(period.get("start")), _range(period.get("end"))
        if (began is None or began[0] <= end) and (ended is None or ended[1] >= start):
            followed.add(str((plan.get("subject") or {}).get("reference")))
        if _within(_first(plan, ("created",), ("period", "start")), start, end):
            new_plans += 1
    raised = handled = 0

    def visible(table: Table) -> ColumnElement[bool]:  # an alert's first version, where it is
        return ctx.visible(table, "Task")

    for alert in all_matches(ctx, "Task", [("code", f"{TASK_CODES}|alerte-vigilance")]):
        when = _first(alert, ("authoredOn",))
        if when is None:
            first = repository.get_version(ctx.conn, "Task", str(alert["id"]), 1, visible=visible)
            when = first.last_updated if first is not None else None
        raised += _within(when, start, end)
        done = _first(alert, ("executionPeriod", "end"), ("lastModified",), ("meta", "lastUpdated"))
        handled += alert.get("status") == "completed" and _within(done, start, end)
    delays: list[float] = []
    items = [
        ("code", f"{TASK_CODES}|suivi-orientation"),
        ("status", OPEN_STATUSES),
        ("business-status:not", "ADMISSION"),
    ]
    for follow_up in all_matches(ctx, "Task", items):
        decided = _first(follow_up, ("authoredOn",))
        if decided is not None and decided <= end:
            delays.append(round((end - decided).total_seconds() / 86400, 1))
    return {
        "people-followed": (len(followed), None),
        "new-plans": (new_plans, None),
        "alerts-raised": (raised, None),
        "alerts-handled": (handled, None),
        "orientations-waiting": (len(delays), round(sum(delays) / len(delays), 1) if delays else None),
        "orientation-delay-max": (len(delays), max(delays) if delays else None),
    }


def evaluate(ctx: Ctx, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, tuple[int, float | None]]]:
    """The MeasureReport and the figures it holds; one AuditEvent."""
    start, end, start_text, end_text = _period(params)
    found = figures(ctx, start, end)
    groups = []
    for code, (count, score) in found.items():
        group: dict[str, Any] = {
            "code": {"coding": [{"system": INDICATORS, "code": code, "display": _DISPLAY[code]}]},
            "population": [
                {"code": {"coding": [{"system": POPULATION, "code": "initial-population"}]}, "count": count}
            ],
        }
        if score is not None:
            group["measureScore"] = {
                "value": score,
                "unit": "d",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        groups.append(group)
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": fhir_instant(utcnow()),
        "period": {"start": start_text, "end": end_text},
        "group": groups,
    }
    if ctx.access.organization:
        report["reporter"] = {"reference": ctx.access.organization}
    query = f"_operation=evaluate-measure&periodStart={start_text}&periodEnd={end_text}"
    ctx.audit("operation", None, None, None, query=query)
    return report, found


def as_csv(report: dict[str, Any], found: dict[str, tuple[int, float | None]]) -> bytes:
    """The figures as CSV (UTF-8, comma, CRLF as RFC 4180), with a header row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    period = report["period"]
    for code, (count, score) in found.items():
        unit = "d" if score is not None else ""
        shown = "" if score is None else score
        writer.writerow([code, _DISPLAY[code], count, shown, unit, period["start"], period["end"]])
    return out.getvalue().encode()


def wants_csv(params: dict[str, str], accept: str | None) -> bool:
    fmt = params.get("_format", "")
    return fmt in ("csv", "text/csv") or (not fmt and bool(accept) and "text/csv" in (accept or ""))
