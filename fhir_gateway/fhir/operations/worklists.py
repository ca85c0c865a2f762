"""Worklists (issue 8): what needs someone's attention, as ``searchset`` Bundles any client reads.

They follow the data the project's profiles and partner mappings produce (``profiles/``,
``mappings/_models``): orientation follow-up Tasks (code ``task-code|suivi-orientation``,
``businessStatus`` from ``orientation-status``), home-care visit Tasks (code from
``prestation-aide-domicile``, planned in ``restriction.period``), vigilance alert Tasks (code
``task-code|alerte-vigilance``) and circles of care whose coordinator has the role
``careteam-role|coordinateur`` (or SNOMED 768821004) without an end date (``fg-ct-1``).

- ``GET [base]/Task/$late?owner=Organization/X[&on=date]``: Tasks of the owner that are late:
  unanswered requests (requested, received) whose due date (``restriction.period.end``, else
  its start) has passed, and visits whose planned time has passed and that are not done.
  Oldest due first; each entry's ``search.extension`` gives the reason.
- ``GET [base]/Task/$orientations-waiting?days=N[&requester=...][&owner=...]``: orientation
  decisions still without admission ``N`` days (default 30) after the decision.
- ``GET [base]/Patient/$follow-up-gaps[?reason=plan-expired,no-coordinator][&on=date]``: people
  with an active plan whose period has ended, or followed (an active plan) without a current
  coordinator in an active circle of care; the expired plans come as ``include`` entries.
- ``GET [base]/Task/$open-alerts[?owner=...][&patient=...]``: vigilance alerts not handled yet.

``$orientations-waiting`` and ``$open-alerts`` are plain searches (their links replay them
as ``Task?...``). The two others need rules the search language cannot say: their candidates
come from ordinary searches under the caller's filter (``fhir.collect``), the rule narrows
them, and paging is done on the result. Paging links carry a cursor bound to the client
(``fhir.cursors``); a client's ``_offset`` is ignored with a warning (400 when strict).
Everything is filtered by scopes and consent like a search; each call is audited. A partner
that may not see a person's CareTeam sees that person as without coordinator: a gap in what
it may know, never a leak.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fhir_gateway.fhir import searching
from fhir_gateway.fhir.collect import all_matches, by_ids
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.pages import PageEntry, paging, searchset
from fhir_gateway.fhir.responses import strict_handling
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.kit.query_string import urlencode
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.search.dates import parse_date_range
from fhir_gateway.search.indexing import patient_compartment_id
from fhir_gateway.storage import compartment_repository
from fhir_gateway.storage.tables import resource

CANONICAL = "https://fhir-gateway.org/fhir"
TASK_CODES = f"{CANONICAL}/CodeSystem/task-code"
VISIT_CODES = f"{CANONICAL}/CodeSystem/prestation-aide-domicile"
REASONS = f"{CANONICAL}/CodeSystem/worklist-reason"
REASON_EXTENSION = f"{CANONICAL}/StructureDefinition/worklist-reason"
COORDINATOR_ROLES = frozenset({"coordinateur", "768821004"})
OPEN = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")
UNANSWERED = frozenset({"requested", "received"})
OPEN_STATUSES = ",".join(OPEN)


def reference_instant(params: dict[str, str]) -> datetime:
    """``on`` (a date or dateTime, its start) or now, as naive UTC."""
    raw = params.get("on")
    if not raw:
        return utcnow().replace(tzinfo=None)
    try:
        return parse_date_range(raw)[0]
    except ValueError:
        raise BadRequest(f"on: '{raw[:40]}' is not a FHIR date", expression=["on"]) from None


def _end_of(value: Any) -> datetime | None:
    """The last instant of a FHIR date/dateTime (``2026-03-01`` ends at midnight), naive UTC."""
    if not isinstance(value, str):
        return None
    try:
        return parse_date_range(value)[1]
    except ValueError:
        return None


def _codes(concept: Any, system: str | None = None) -> set[str]:
    codings = (concept or {}).get("coding") or [] if isinstance(concept, dict) else []
    return {str(c.get("code")) for c in codings if system is None or c.get("system") == system}


def _reason(code: str) -> tuple[dict[str, Any], ...]:
    return ({"url": REASON_EXTENSION, "valueCoding": {"system": REASONS, "code": code}},)


def _content(body: dict[str, Any]) -> str:
    return jsonutil.dumps_str(body)


def is_visit(task: dict[str, Any]) -> bool:
    """A home-care visit (fg-task-home-care-visit: code from prestation-aide-domicile)."""
    code = task.get("code")
    return bool(_codes(code, VISIT_CODES)) or "intervention-domicile" in _codes(code, TASK_CODES)


def late_reason(task: dict[str, Any], now: datetime) -> tuple[str, datetime] | None:
    """Why an open Task is late at ``now`` (and since when), or None."""
    period = (task.get("restriction") or {}).get("period") or {}
    due = _end_of(period.get("end")) or _end_of(period.get("start"))
    if due is None or due >= now:
        return None
    if is_visit(task):
        return "missed-visit", due
    if task.get("status") in UNANSWERED:
        return "overdue-request", due
    return None


def _patients_included(ctx: Ctx, entries: list[PageEntry]) -> list[PageEntry]:
    """The persons of the page's Tasks, as ``include`` entries (those the caller may see)."""
    if not ctx.access.allows("Patient", "r"):
        return []
    sources = [(e.res_type, e.res_id) for e in entries]
    rows = compartment_repository.referenced(
        ctx.conn, sources, ["Patient"], ctx.visible(resource, "Patient"), ctx.settings.max_include
    )
    return [PageEntry(t, i, c, "include") for t, i, c in rows]


def late_tasks(ctx: Ctx, params: dict[str, str], base: str, prefer: str | None = None) -> bytes:
    """``Task/$late`` (see the module docstring)."""
    owner = params.get("owner") or ctx.access.organization
    if not owner:
        raise BadRequest("$late needs an 'owner' (e.g. Organization/123)", expression=["owner"])
    now = reference_instant(params)
    page = paging(ctx, f"{base}/Task/$late", {**params, "owner": owner}, strict=strict_handling(prefer))
    found: list[tuple[datetime, str, dict[str, Any]]] = []
    for task in all_matches(ctx, "Task", [("owner", owner), ("status", OPEN_STATUSES)]):
        late = late_reason(task, now)
        if late is not None:
            found.append((late[1], late[0], task))
    found.sort(key=lambda f: (f[0], str(f[2].get("id"))))
    chosen = found[page.offset : page.offset + page.count]
    entries = [PageEntry("Task", str(t["id"]), _content(t), "match", _reason(r)) for _due, r, t in chosen]
    persons = (patient_compartment_id(task) for _due, _reason_code, task in chosen)
    ctx.audit_people("operation", "Task", persons, query=urlencode({"_operation": "late", "owner": owner}))
    return searchset(base, page, entries + _patients_included(ctx, entries), len(found))


def _search(
    ctx: Ctx, items: list[tuple[str, str]], params: dict[str, str], prefer: str | None, base: str
) -> bytes:
    passed = [
        (k, v)
        for k, v in params.items()
        if k in ("_count", "_cursor", "_offset", "_total", "owner", "requester", "patient")
    ]
    return searching.search(ctx, "Task", [*items, *passed], prefer, base)


def orientations_waiting(ctx: Ctx, params: dict[str, str], prefer: str | None, base: str) -> bytes:
    """``Task/$orientations-waiting``: a search of the orientation follow-ups still waiting."""
    raw = params.get("days", "30")
    if not raw.isdigit():
        raise BadRequest("days must be a non-negative integer", expression=["days"])
    decided_before = (reference_instant(params) - timedelta(days=int(raw))).date().isoformat()
    items = [
        ("code", f"{TASK_CODES}|suivi-orientation"),
        ("status", OPEN_STATUSES),
        ("business-status:not", "ADMISSION"),
        ("authored-on", f"le{decided_before}"),
        ("_sort", "authored-on"),
        ("_include", "Task:patient"),
    ]
    return _search(ctx, items, params, prefer, base)


def open_alerts(ctx: Ctx, params: dict[str, str], prefer: str | None, base: str) -> bytes:
    """``Task/$open-alerts``: a search of the vigilance alerts not handled yet, oldest first."""
    items = [
        ("code", f"{TASK_CODES}|alerte-vigilance"),
        ("status", OPEN_STATUSES),
        ("_sort", "_lastUpdated"),
        ("_include", "Task:patient"),
    ]
    return _search(ctx, items, params, prefer, base)


def has_coordinator(team: dict[str, Any], now: datetime) -> bool:
    """A current participant with the coordinator role (fg-careteam-circle-of-care, fg-ct-1)."""
    for participant in team.get("participant") or []:
        roles = (
            set().union(*(_codes(r) for r in participant.get("role") or []))
            if participant.get("role")
            else set()
        )
        end = _end_of((participant.get("period") or {}).get("end"))
        if roles & COORDINATOR_ROLES and (end is None or end >= now):
            return True
    return False


def _subject(body: dict[str, Any]) -> str | None:
    reference = str((body.get("subject") or {}).get("reference") or "")
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else None


def follow_up_gaps(ctx: Ctx, params: dict[str, str], base: str, prefer: str | None = None) -> bytes:
    """``Patient/$follow-up-gaps`` (see the module docstring)."""
    wanted = {r.strip() for r in params.get("reason", "plan-expired,no-coordinator").split(",") if r.strip()}
    if not wanted or wanted - {"plan-expired", "no-coordinator"}:
        raise BadRequest("reason takes plan-expired and/or no-coordinator", expression=["reason"])
    now = reference_instant(params)
    page = paging(ctx, f"{base}/Patient/$follow-up-gaps", params, strict=strict_handling(prefer))
    reasons: dict[str, list[str]] = {}
    expired_plans: dict[str, list[dict[str, Any]]] = {}
    followed: set[str] = set()
    for plan in all_matches(ctx, "CarePlan", [("status", "active")]):
        person = _subject(plan)
        if person is None:
            continue
        followed.add(person)
        end = _end_of((plan.get("period") or {}).get("end"))
        if "plan-expired" in wanted and end is not None and end < now:
            expired_plans.setdefault(person, []).append(plan)
            reasons.setdefault(person, []).append("plan-expired")
    if "no-coordinator" in wanted and followed:
        coordinated = {
            _subject(team)
            for team in by_ids(
                ctx, "CareTeam", "subject", [f"Patient/{p}" for p in sorted(followed)], [("status", "active")]
            )
            if has_coordinator(team, now)
        }
        for person in followed - coordinated:
            reasons.setdefault(person, []).append("no-coordinator")
    people = {str(p["id"]): p for p in by_ids(ctx, "Patient", "_id", sorted(reasons), [])} if reasons else {}
    listed = sorted(people)
    chosen = listed[page.offset : page.offset + page.count]
    entries: list[PageEntry] = []
    for pid in chosen:
        codes = tuple(ext for code in dict.fromkeys(reasons[pid]) for ext in _reason(code))
        entries.append(PageEntry("Patient", pid, _content(people[pid]), "match", codes))
    for pid in chosen:
        entries += [
            PageEntry("CarePlan", str(p["id"]), _content(p), "include") for p in expired_plans.get(pid, [])
        ]
    ctx.audit_people(
        "operation",
        "Patient",
        chosen,
        query=urlencode({"_operation": "follow-up-gaps", "reason": ",".join(sorted(wanted))}),
    )
    return searchset(base, page, entries, len(listed))
