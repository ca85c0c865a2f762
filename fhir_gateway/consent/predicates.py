"""The consent decision as SQL sets (FHIR R4 consent.html#6.2.3, DESIGN.md "Consent").

For one caller (its actor references), purpose, action and data class, the decision on
a person is:

1. deny when an active deny grant matches (the actor itself, a CareTeam it currently
   belongs to, or every actor ``*``), unless a nested permit of the same Consent carves
   the request out of it (the exception rule of nested provisions);
2. else permit when an active permit grant matches;
3. else the default policy: ``care-team-opt-out`` permits current members of one of the
   person's active CareTeams, ``opt-in`` denies.

In ``permitted`` each step is an EXISTS correlated with the person (and resource) of the
row: an index probe of ``consent_grant (patient_id, effect)`` or ``careteam_member
(patient_id, member)`` per row, and for a grant to a CareTeam one probe of ``careteam_member
(member, careteam_ref)`` (``_team_of``). ``permitted_of_person`` (a search of one person's
compartment) and ``deciding_consents`` (what decided, for the audit trail) take steps 1 and 2
in one pass over the person's matching grants (``_deciding_key``). The cost follows the rows
read, not the number of people who consented to the caller (a set of all of them, hashed once
per query, cost a read 0.4 ms per 500 people) nor that of the teams it belongs to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)

from fhir_gateway.storage.consent_tables import TEAM_PREFIX, careteam_member, consent_grant

CARE_TEAM_OPT_OUT = "care-team-opt-out"
OPT_IN = "opt-in"
ClassExpr = ColumnElement[Any] | str
Moment = datetime | ColumnElement[Any]  # a value, or the per-execution ``consent_now`` parameter
_Args = tuple[list[str], str, str, ClassExpr, Moment]  # actors, purpose, action, class, now


def any_of(column: Any, values: list[str]) -> ColumnElement[bool]:
    """``column = v1 OR column = v2 ...``: plain bound parameters, unlike ``IN (list)``, whose
    "expanding" parameters make SQLAlchemy re-render the statement at every execution."""
    return or_(*(column == v for v in values))


def _covers(table: Any, now: Moment) -> ColumnElement[bool]:
    """``table``'s period covers ``now`` (open bounds allowed, end exclusive)."""
    return and_(
        or_(table.c.period_start.is_(None), table.c.period_start <= now),
        or_(table.c.period_end.is_(None), table.c.period_end > now),
    )


def _team_of(actor: ColumnElement[Any], actors: list[str], now: Moment) -> ColumnElement[bool]:
    """A grant's ``actor`` is a CareTeam one of ``actors`` currently belongs to: a probe of
    ``careteam_member (member, careteam_ref)`` for that grant alone. The set of every team of
    the caller, hashed once per statement, cost each read and search in proportion to the
    teams the caller is in, and a home-care service is in the team of every person it visits."""
    m = careteam_member.alias()
    # a scalar subquery: PostgreSQL may plan an EXISTS or an IN as that hashed set (it did)
    found = select(literal(1)).where(m.c.careteam_ref == actor, any_of(m.c.member, actors), _covers(m, now))
    return and_(actor.startswith(TEAM_PREFIX), found.limit(1).scalar_subquery().is_not(None))


def _class_matches(g: Any, cls: ClassExpr) -> ColumnElement[bool]:
    if isinstance(cls, str):
        return any_of(g.c.res_class, [cls, "*"])
    return or_(g.c.res_class == cls, g.c.res_class == "*")


def _matches(
    g: Any, actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> ColumnElement[bool]:
    """Grant row ``g`` applies to this actor, purpose, action, class, now."""
    actor_ok: ColumnElement[bool] = any_of(g.c.actor, ["*", *actors])
    if actors:
        actor_ok = or_(actor_ok, _team_of(g.c.actor, actors, now))
    return and_(
        actor_ok,
        _class_matches(g, cls),
        any_of(g.c.purpose, [purpose, "*"]),
        any_of(g.c.action, [action, "*"]),
        _covers(g, now),
    )


def _overridden(
    g: Any, actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> ColumnElement[bool]:
    """SQL: grant row ``g`` is carved out by a matching nested permit of its Consent (the
    exception rule of nested provisions)."""
    o = consent_grant.alias()
    return exists().where(
        o.c.consent_id == g.c.consent_id,
        any_of(o.c.effect, ["permit", "except"]),
        o.c.path.like(g.c.path + ".%"),
        o.c.data_id == "*",
        _matches(o, actors, purpose, action, cls, now),
    )


def _deny_rows(
    actors: list[str], purpose: str, action: str, cls: ClassExpr, now: Moment
) -> tuple[Any, ColumnElement[bool]]:
    """Matching deny rows not carved out by a matching nested permit of their Consent."""
    g = consent_grant.alias()
    override = _overridden(g, actors, purpose, action, cls, now)
    cond = and_(
        g.c.effect == "deny",
        _matches(g, actors, purpose, action, cls, now),
        or_(not_(g.c.overridable), not_(override)),
    )
    return g, cond


def _target(g: Any, res_id: ColumnElement[Any] | None) -> ColumnElement[bool]:
    """Grant row ``g`` is about the person's whole class (``data_id`` ``*``), or about the
    resource ``res_id`` itself when one is given: one index probe answers both."""
    whole: ColumnElement[bool] = g.c.data_id == "*"
    return whole if res_id is None else or_(whole, g.c.data_id == res_id)


def _denied(
    person: ColumnElement[Any], res_id: ColumnElement[Any] | None, args: _Args
) -> ColumnElement[bool]:
    """A deny grant on ``person``'s whole class or (``res_id`` given) on that one resource."""
    g, cond = _deny_rows(*args)
    return exists().where(g.c.patient_id == person, _target(g, res_id), cond)


def _permitted(
    person: ColumnElement[Any], res_id: ColumnElement[Any] | None, args: _Args
) -> ColumnElement[bool]:
    """A permit grant on ``person``'s whole class or (``res_id`` given) on that one resource."""
    g = consent_grant.alias()
    return exists().where(
        g.c.patient_id == person, _target(g, res_id), g.c.effect == "permit", _matches(g, *args)
    )


def _in_care_team(person: ColumnElement[Any], actors: list[str], now: Moment) -> ColumnElement[bool]:
    """One of the person's active CareTeams has the caller as a current member."""
    m = careteam_member.alias()
    return exists().where(m.c.patient_id == person, any_of(m.c.member, actors), _covers(m, now))


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
    args: _Args = (actors, purpose, action, cls, now)
    allowed: list[ColumnElement[bool]] = [_permitted(person, res_id, args)]
    if policy == CARE_TEAM_OPT_OUT:
        allowed.append(_in_care_team(person, actors, now))
    return and_(or_(*allowed), not_(_denied(person, res_id, args)))


def permitted_of_person(
    person: ColumnElement[Any],
    res_id: ColumnElement[Any],
    cls: ClassExpr,
    *,
    actors: list[str],
    purpose: str,
    action: str,
    policy: str,
    now: Moment,
) -> ColumnElement[bool]:
    """``permitted`` for rows that all belong to ``person``, a bound value rather than a column.

    The same rules in fewer plan nodes: one pass over the person's matching grants answers
    both "a permit applies" and "a deny applies" (``_one_pass``), where ``permitted`` probes
    them with a subquery each. PostgreSQL initialises every node of a statement at each
    execution, run or not: for a partner's search, that initialisation cost more than running
    the consent subqueries (its bind took 84-147 µs against the trusted search's 19-34, the
    executions the same); this form's bind takes about a tenth less.

    The decision on the person's whole class does not depend on the row: it is computed once
    per statement (an InitPlan in PostgreSQL, once in SQLite too). Only when the person has
    some grant on a single resource (``data_id`` not ``*``) is the row's own decision computed
    instead, row by row (``CASE`` evaluates that branch only then).
    """
    if not actors:
        return false()
    args: _Args = (actors, purpose, action, cls, now)
    g = consent_grant.alias()
    some_single = exists().where(g.c.patient_id == person, g.c.data_id != "*")
    whole_class = _one_pass(person, None, args, policy)
    row_wise = _one_pass(person, res_id, args, policy)
    return case((some_single, row_wise), else_=whole_class) == true()


def _one_pass(
    person: ColumnElement[Any], res_id: ColumnElement[Any] | None, args: _Args, policy: str
) -> ColumnElement[Any]:
    """A scalar subquery: the decision on ``person`` (and ``res_id`` if given), permit when the
    least deciding key (``_deciding_key``) is a permit's or, ``care-team-opt-out``, when no
    grant decides and the caller is in one of the person's care teams."""
    g = consent_grant.alias()
    first: ColumnElement[Any] = func.substr(func.min(_deciding_key(g, args)), 1, 1)
    if policy == CARE_TEAM_OPT_OUT:  # no grant decides: the care team does (``coalesce`` is lazy)
        actors, _, _, _, now = args
        in_team = case((_in_care_team(person, actors, now), PERMIT_KEY), else_=DENY_KEY)
        first = func.coalesce(first, in_team)
    # the aggregate written once: PostgreSQL does not share two of them whose argument has a subquery
    decision = first == PERMIT_KEY
    return select(decision).where(*_deciding_grants(g, person, res_id, args)).scalar_subquery()


DENY_KEY, PERMIT_KEY = "0", "1"  # a deciding key's first character: deny ones sort first


def _deciding_key(g: Any, args: _Args) -> ColumnElement[Any]:
    """Of a grant row ``g`` among ``_deciding_grants``: ``DENY_KEY`` + its Consent's id for a deny
    that applies (not carved out by a nested permit of its Consent), ``PERMIT_KEY`` + the id for
    a permit, else null. The least key of a person's grants is the first deny Consent (by id:
    keys of one effect share their first character) if any deny applies, else the first permit
    Consent: the decision and what decided, from one pass over the grants instead of a subquery
    for each effect."""
    applies = and_(g.c.effect == "deny", or_(not_(g.c.overridable), not_(_overridden(g, *args))))
    return case(
        (applies, literal_column(f"'{DENY_KEY}'", String) + g.c.consent_id),
        (g.c.effect == "permit", literal_column(f"'{PERMIT_KEY}'", String) + g.c.consent_id),
    )


def _deciding_grants(
    g: Any, person: ColumnElement[Any], res_id: ColumnElement[Any] | None, args: _Args
) -> tuple[ColumnElement[bool], ...]:
    """The grant rows ``g`` of ``person`` (on the whole class, or ``res_id``) matching the caller."""
    return (
        g.c.patient_id == person,
        _target(g, res_id),
        any_of(g.c.effect, ["permit", "deny"]),
        _matches(g, *args),
    )


def decided_values(decided: str | None, in_team: Any) -> tuple[str | None, str | None, bool]:
    """``deciding_consents``' columns as ``(deny_by, permit_by, in_team)``: the first deny
    Consent's id, else the first permit Consent's id, and care-team membership."""
    if decided is None:
        return None, None, bool(in_team)
    consent_id = decided[1:]
    if decided[0] == DENY_KEY:
        return consent_id, None, bool(in_team)
    return None, consent_id, bool(in_team)


def decided_permit(decided: ColumnElement[Any], in_team: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL over ``deciding_consents``' columns: the decision is permit."""
    return or_(func.substr(decided, 1, 1) == PERMIT_KEY, and_(decided.is_(None), in_team))


def deciding_consents(
    person: ColumnElement[Any],
    cls: ClassExpr,
    *,
    actors: list[str],
    purpose: str,
    action: str,
    policy: str,
    now: Moment,
    res_id: ColumnElement[Any] | None = None,
) -> Select[Any]:
    """One row: ``decided``, the least deciding key of the person's grants (``_deciding_key``:
    the first deny Consent if a deny applies, else the first permit Consent, else null), and
    ``in_team``, care-team membership (``care-team-opt-out``).

    The same rules as ``permitted`` for a whole class (or, ``res_id`` given, for that
    resource too), answering *what* decided in one statement (the audit trail's "decided
    by"); ``decision.decide`` explains it in full. ``decided_values`` reads the columns as
    ``(deny_by, permit_by, in_team)``, ``decided_permit`` tests them in SQL.
    """
    args: _Args = (actors, purpose, action, cls, now)
    g = consent_grant.alias()
    first = select(func.min(_deciding_key(g, args))).where(*_deciding_grants(g, person, res_id, args))
    team = _in_care_team(person, actors, now) if policy == CARE_TEAM_OPT_OUT else false()
    return select(first.scalar_subquery().label("decided"), team.label("in_team"))
