"""The consent decision with its reasons, for ``$access`` and the audit trail.

Same rules as the SQL filter (``consent.predicates``, FHIR R4 consent.html#6.2.3), here
evaluated on the person's few grant rows in Python so that it can say *which* Consent
(or which default policy) decided. Tests check both agree on every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent.predicates import CARE_TEAM_OPT_OUT, decided_values
from fhir_gateway.consent.visibility import caller_actors, deciding_consents_query, now_naive
from fhir_gateway.storage import consent_repository
from fhir_gateway.storage.consent_tables import TEAM_PREFIX

Grant = dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """permit or deny, and what decided: ``Consent/<id>`` or ``default policy: <name>``."""

    permit: bool
    decided_by: str
    consent_id: str | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "permit" if self.permit else "deny"


def _covers(g: Grant, now: datetime) -> bool:
    return (g["period_start"] is None or g["period_start"] <= now) and (
        g["period_end"] is None or g["period_end"] > now
    )


def _matches(g: Grant, who: set[str], purpose: str, action: str, res_type: str | None, now: datetime) -> bool:
    return (
        (g["actor"] == "*" or g["actor"] in who)
        and (g["res_class"] == "*" or g["res_class"] == res_type)
        and g["purpose"] in ("*", purpose)
        and g["action"] in ("*", action)
        and _covers(g, now)
    )


def _describe(g: Grant) -> str:
    what = g["res_class"] if g["data_id"] == "*" else f"{g['res_class']}/{g['data_id']}"
    return (
        f"Consent/{g['consent_id']} provision {g['path']}: {g['effect']} actor={g['actor']} "
        f"class={what} purpose={g['purpose']} action={g['action']}"
    )


def decide(
    conn: Connection,
    patient_id: str,
    actors: list[str],
    purpose: str,
    res_type: str | None,
    *,
    action: str = "read",
    policy: str = CARE_TEAM_OPT_OUT,
    now: datetime | None = None,
) -> Decision:
    """The decision for ``actors`` on ``patient_id``'s ``res_type`` data (None: any class)."""
    now = now or now_naive()
    grants = consent_repository.grants_of_patient(conn, patient_id)
    named = sorted({str(g["actor"]) for g in grants if str(g["actor"]).startswith(TEAM_PREFIX)})
    teams = (
        consent_repository.current_teams(conn, actors, now, of_person=patient_id, named=named)
        if actors
        else []
    )
    who = set(actors) | {ref for ref, _ in teams}
    reasons = [f"member of {ref} (current)" for ref, _ in teams]

    def hit(g: Grant) -> bool:
        return g["data_id"] == "*" and _matches(g, who, purpose, action, res_type, now)

    def overridden(g: Grant) -> bool:
        return bool(g["overridable"]) and any(
            o["consent_id"] == g["consent_id"]
            and o["effect"] in ("permit", "except")
            and str(o["path"]).startswith(g["path"] + ".")
            and hit(o)
            for o in grants
        )

    for g in grants:
        if g["data_id"] != "*" or (res_type is None and g["res_class"] != "*"):
            if _matches(g, who, purpose, action, g["res_class"], now):
                reasons.append("narrower rule, not deciding: " + _describe(g))
    if actors:
        denies = [g for g in grants if g["effect"] == "deny" and hit(g) and not overridden(g)]
        if denies:
            return Decision(
                False,
                f"Consent/{denies[0]['consent_id']}",
                denies[0]["consent_id"],
                [*reasons, *("deny wins: " + _describe(g) for g in denies)],
            )
        permits = [g for g in grants if g["effect"] == "permit" and hit(g)]
        if permits:
            return Decision(
                True,
                f"Consent/{permits[0]['consent_id']}",
                permits[0]["consent_id"],
                [*reasons, *("permit: " + _describe(g) for g in permits)],
            )
    person_teams = [ref for ref, patient in teams if patient == patient_id]
    if policy == CARE_TEAM_OPT_OUT and person_teams:
        return Decision(
            True,
            f"default policy: {policy}",
            reasons=[*reasons, f"current member of the person's {', '.join(person_teams)}"],
        )
    why = (
        "no Consent permits"
        if policy != CARE_TEAM_OPT_OUT
        else ("no Consent permits and not a current member of the person's care teams")
    )
    return Decision(False, f"default policy: {policy}", reasons=[*reasons, why])


def explain(
    conn: Connection, patient_id: str, actor: str, purpose: str, res_type: str | None, policy: str
) -> Decision:
    """Why ``actor`` may or may not read ``patient_id``'s data (``$access``)."""
    return decide(conn, patient_id, [actor], purpose, res_type, policy=policy)


def decision_for(
    conn: Connection,
    access: AccessContext,
    patient_id: str,
    res_type: str | None,
    *,
    action: str = "read",
    policy: str = CARE_TEAM_OPT_OUT,
) -> Decision:
    """The caller's decision on one person, for the audit trail of a read or a write.

    One statement (``predicates.deciding_consents``): the same answer as ``decide`` without
    its reasons, at the cost of one round trip per audited request.
    """
    if access.trusted:
        return Decision(True, "trusted client")
    if access.patient is not None:
        return Decision(access.patient == patient_id, "patient context")
    if access.break_glass:
        return Decision(True, "break-glass")
    if not caller_actors(access):
        return Decision(False, f"default policy: {policy}")
    query = deciding_consents_query(access, res_type, action, policy)
    row = conn.execute(query, {"consent_patient": patient_id}).one()
    return decision_from(*decided_values(row.decided, row.in_team), policy)


def decision_from(deny_by: str | None, permit_by: str | None, in_team: Any, policy: str) -> Decision:
    """The decision told by ``predicates.deciding_consents``' three columns."""
    if deny_by is not None:
        return Decision(False, f"Consent/{deny_by}", deny_by)
    if permit_by is not None:
        return Decision(True, f"Consent/{permit_by}", permit_by)
    return Decision(bool(in_team), f"default policy: {policy}")
