"""The consent decision as SQL sets (FHIR R4 consent.html#6.2.3, DESIGN.md "Consent").

For one caller (its actor references), purpose, action and data class, the decision on
a person is:

1. deny when an active deny grant matches (the actor itself, a CareTeam it currently
   belongs to, or every actor ``*``), unless a nested permit of the same Consent carves
   the request out of it (the exception rule of nested provisions);
2. else permit when an active permit grant matches;
3. else the default policy: ``care-team-opt-out`` permits current members of one of the
   person's active CareTeams, ``opt-in`` denies.

Each step is a sub-select of patient ids. When the class is a constant (one resource
type is searched) the sub-selects do not depend on the outer row, so both PostgreSQL
(hashed SubPlan) and SQLite (ephemeral index) compute them once per query: filtering
costs a few index lookups on ``consent_grant``/``careteam_member``, not one per row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, not_, or_, select, tuple_, union_all

from fhir_gateway.storage.consent_tables import careteam_member, consent_grant

CARE_TEAM_OPT_OUT = "care-team-opt-out"
OPT_IN = "opt-in"
ClassExpr = ColumnElement[Any] | str
Moment = datetime | ColumnElement[Any]  # a value, or the per-execution ``consent_now`` parameter


def _covers(table: Any, now: Moment) -> ColumnElement[bool]:
    """``table``'s period covers ``now`` (open bounds allowed, end exclusive)."""
    return and_(
        or_(table.c.period_start.is_(None), table.c.period_start <= now),
        or_(table.c.period_end.is_(None), table.c.period_end > now),
    )


def current_teams(actors: list[str], now: Moment) -> Select[Any]:
    """``CareTeam/<id>`` of the teams one of ``actors`` currently belongs to."""
    m = careteam_member.alias()
    return select(m.c.careteam_ref).where(m.c.member.in_(actors), _covers(m, now))


def _class_matches(g: Any, cls: ClassExpr) -> ColumnElement[bool]:
    if isinstance(cls, str):
        return g.c.res_class.in_([cls, "*"])  # type: ignore[no-any-return]
    return or_(g.c.res_class == cls, g.c.res_class == "*")


def _matches(
    g: Any, actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> ColumnElement[bool]:
    """Grant row ``g`` applies to this actor, purpose, action, class, now."""
    actor_ok: ColumnElement[bool] = g.c.actor.in_(["*", *actors])
    if actors:
        actor_ok = or_(actor_ok, g.c.actor.in_(current_teams(actors, now)))
    return and_(
        actor_ok,
        _class_matches(g, cls),
        g.c.purpose.in_([purpose, "*"]),
        g.c.action.in_([action, "*"]),
        _covers(g, now),
    )


def _deny_rows(
    actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> tuple[Any, ColumnElement[bool]]:
    """Matching deny rows not carved out by a matching nested permit of their Consent."""
    g = consent_grant.alias()
    o = consent_grant.alias()
    override = exists().where(
        o.c.consent_id == g.c.consent_id,
        o.c.effect.in_(["permit", "except"]),
        o.c.path.like(g.c.path + ".%"),
        o.c.data_id == "*",
        _matches(o, actors, purpose, action, cls, now),
    )
    cond = and_(
        g.c.effect == "deny",
        _matches(g, actors, purpose, action, cls, now),
        or_(not_(g.c.overridable), not_(override)),
    )
    return g, cond


def denied_patients(actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment) -> Select[Any]:
    """Persons whose whole class ``cls`` is denied to the caller."""
    g, cond = _deny_rows(actors, purpose, action, cls, now)
    return select(g.c.patient_id).where(cond, g.c.data_id == "*")


def denied_instances(
    actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> Select[Any]:
    """``(person, resource id)`` pairs denied one by one (Consent.provision.data)."""
    g, cond = _deny_rows(actors, purpose, action, cls, now)
    return select(g.c.patient_id, g.c.data_id).where(cond, g.c.data_id != "*")


def permitted_patients(
    actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> Select[Any]:
    """Persons whose class ``cls`` a Consent permits to the caller."""
    g = consent_grant.alias()
    return select(g.c.patient_id).where(
        g.c.effect == "permit", g.c.data_id == "*", _matches(g, actors, purpose, action, cls, now)
    )


def permitted_instances(
    actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> Select[Any]:
    """``(person, resource id)`` pairs a Consent permits one by one."""
    g = consent_grant.alias()
    return select(g.c.patient_id, g.c.data_id).where(
        g.c.effect == "permit", g.c.data_id != "*", _matches(g, actors, purpose, action, cls, now)
    )


def team_patients(actors: list[str], now: Moment) -> Select[Any]:
    """Persons one of whose active CareTeams the caller currently belongs to."""
    m = careteam_member.alias()
    return select(m.c.patient_id).where(m.c.member.in_(actors), m.c.patient_id.is_not(None), _covers(m, now))


def permitted(
    person: ColumnElement[Any],
    res_id: ColumnElement[Any] | None,
    cls: ClassExpr,
    *,
    actors: list[str],
    purpose: str,
    action: str,
    policy: str,
    now: Moment,
) -> ColumnElement[bool]:
    """SQL: the decision on ``person`` (and resource ``res_id``) is permit."""
    if not actors:
        return false()
    args = (actors, purpose, action, cls, now)
    patients: Any = permitted_patients(*args)
    if policy == CARE_TEAM_OPT_OUT:
        patients = union_all(patients, team_patients(actors, now))
    allowed: list[ColumnElement[bool]] = [person.in_(patients)]
    not_denied: list[ColumnElement[bool]] = [person.not_in(denied_patients(*args))]
    if res_id is not None:
        pair = tuple_(person, res_id)
        allowed.append(pair.in_(permitted_instances(*args)))
        not_denied.append(pair.not_in(denied_instances(*args)))
    return and_(or_(*allowed), *not_denied)
