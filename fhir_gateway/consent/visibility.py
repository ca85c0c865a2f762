"""Which stored rows a caller may see or write, as SQL (FHIR R4 consent.html#6.2.3).

DESIGN.md "A request's way": every query is filtered by consent in SQL, never in Python,
so that paging and totals stay right and a denied resource is never counted.

- trusted clients: everything (they are audited, not filtered);
- patient-context tokens (SMART ``patient/`` scopes): the person's own compartment,
  their own AuditEvents included ("who looked at my file");
- partners: rows tied to no person (Organization, Practitioner...) and rows of persons
  for whom the consent decision (``consent.predicates``) is permit; break-glass callers
  see every person's data (the request is audited with its reason);
- Subscription rows: only the client that created them (FHIR R4 subscription.html: a
  subscription is its owner's business; trusted clients administer all);
- Group rows (a list of persons, e.g. an organisation's caseload for bulk export): only the
  Groups the caller manages (``Group.managingEntity`` is its Organization or Practitioner);
  what a Group lists is never more than references, each person's data stays under consent;
- AuditEvent rows: only auditors (an explicit ``AuditEvent`` scope: ``system/AuditEvent.rs``;
  a ``*`` scope is not enough), trusted clients and the person themself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    DateTime,
    Select,
    String,
    and_,
    bindparam,
    case,
    exists,
    false,
    literal_column,
    or_,
    select,
    true,
)

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent.predicates import CARE_TEAM_OPT_OUT, deciding_consents, permitted
from fhir_gateway.kit.errors import Forbidden
from fhir_gateway.kit.lru import Lru
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.storage.outbox_tables import subscription
from fhir_gateway.storage.tables import idx_reference, is_shared

AUDIT_TYPE = "AuditEvent"
SUBSCRIPTION_TYPE = "Subscription"
GROUP_TYPE = "Group"
_MANAGER = idx_reference.alias("idx_reference_group_manager")
OWN_ONLY_WRITES = frozenset({"Consent"})


def caller_actors(access: AccessContext) -> list[str]:
    """The caller's actor references: its Organization, Practitioner (and PractitionerRole)."""
    actors: list[str] = []
    for kind, value in (
        ("Organization", access.organization),
        ("Practitioner", access.practitioner),
        ("PractitionerRole", access.extra.get("practitioner_role")),
    ):
        if value:
            actors.append(value if "/" in value else f"{kind}/{value}")
    return actors


def is_auditor(access: AccessContext) -> bool:
    """True for a system/user scope naming AuditEvent explicitly with read or search."""
    if access.extra.get("role") == "auditor":
        return True
    return any(
        s.context in ("system", "user") and s.resource_type == AUDIT_TYPE and s.interactions & {"r", "s"}
        for s in access.scopes
    )


def now_naive() -> Any:
    return utcnow().replace(tzinfo=None)


# "Now" as a bind parameter evaluated at each execution: a filter built once can be reused
# by every later request and still compare periods with the moment of that request.
NOW: BindParameter[datetime] = bindparam("consent_now", callable_=now_naive, type_=DateTime())
_clauses: Lru[ColumnElement[bool]] = Lru(4096)


def _cache_key(
    access: AccessContext, alias: Any, res_type: str | None, policy: str
) -> tuple[Any, ...] | None:
    """Key of a reusable filter: for the tables and their shared aliases (others are per query)."""
    if not is_shared(alias):
        return None
    return (
        alias.name,
        res_type,
        policy,
        access.trusted,
        access.patient,
        tuple(caller_actors(access)),
        access.purpose,
        bool(access.break_glass),
        is_auditor(access),
        access.client_id if res_type in (SUBSCRIPTION_TYPE, None) else None,
    )


def visible_clause(
    access: AccessContext, alias: Any, res_type: str | None, *, policy: str = CARE_TEAM_OPT_OUT
) -> ColumnElement[bool]:
    """SQL condition on ``alias`` (``resource`` or ``resource_history``) for rows ``access`` may read.

    ``res_type`` None: the rows may be of several types (system search or history). Filters
    on the shared tables are built once per kind of caller and reused (they hold no time).
    """
    key = _cache_key(access, alias, res_type, policy)
    if key is None:
        return _build_clause(access, alias, res_type, policy)
    return _clauses.get_or_build(key, lambda: _build_clause(access, alias, res_type, policy))


def _build_clause(
    access: AccessContext, alias: Any, res_type: str | None, policy: str
) -> ColumnElement[bool]:
    if access.trusted:
        return true()
    if access.patient is not None:
        own: ColumnElement[bool] = alias.c.patient_id == access.patient
        if res_type == "Patient":
            return or_(alias.c.res_id == access.patient, own)
        if res_type is None:
            return or_(and_(alias.c.res_type == "Patient", alias.c.res_id == access.patient), own)
        return own
    audit_ok: ColumnElement[bool] = true() if is_auditor(access) else false()
    if res_type == AUDIT_TYPE:
        return audit_ok
    if res_type == SUBSCRIPTION_TYPE:
        return _owned_subscription(access, alias)
    if res_type == GROUP_TYPE:
        return _managed_group(access, alias)
    consent_ok = _partner_clause(access, alias, res_type, policy)
    if res_type is None:
        return or_(
            and_(alias.c.res_type == AUDIT_TYPE, audit_ok),
            and_(alias.c.res_type == SUBSCRIPTION_TYPE, _owned_subscription(access, alias)),
            and_(alias.c.res_type == GROUP_TYPE, _managed_group(access, alias)),
            and_(alias.c.res_type.not_in([AUDIT_TYPE, SUBSCRIPTION_TYPE, GROUP_TYPE]), consent_ok),
        )
    return consent_ok


def _managed_group(access: AccessContext, alias: Any) -> ColumnElement[bool]:
    """The Group rows whose ``managingEntity`` (search index) is one of the caller's actors."""
    m = _MANAGER
    actors = [a.split("/", 1) for a in caller_actors(access)]
    if not actors:
        return false()
    return exists().where(
        m.c.res_type == GROUP_TYPE,
        m.c.res_id == alias.c.res_id,
        m.c.param == "managing-entity",
        or_(*(and_(m.c.target_type == kind, m.c.target_id == res_id) for kind, res_id in actors)),
    )


def _owned_subscription(access: AccessContext, alias: Any) -> ColumnElement[bool]:
    """The Subscription rows created by this client (``subscription.owner_client``)."""
    mine = subscription.c.owner_client == access.client_id
    return exists().where(subscription.c.sub_id == alias.c.res_id, mine)


def _partner_clause(
    access: AccessContext, alias: Any, res_type: str | None, policy: str
) -> ColumnElement[bool]:
    if access.break_glass:
        return true()
    if res_type == "Patient":
        person: ColumnElement[Any] = alias.c.res_id
    elif res_type is not None:
        person = alias.c.patient_id
    else:
        person = case((alias.c.res_type == "Patient", alias.c.res_id), else_=alias.c.patient_id)
    decision = permitted(
        person,
        alias.c.res_id,
        res_type if res_type is not None else alias.c.res_type,
        actors=caller_actors(access),
        purpose=access.purpose,
        action="read",
        policy=policy,
        now=NOW,
    )
    if res_type == "Patient":
        return decision
    return or_(person.is_(None), decision)


_PATIENT = bindparam("consent_patient", type_=String())
_write_checks: Lru[Select[Any]] = Lru(4096)


def _write_check(access: AccessContext, res_type: str, policy: str) -> Select[Any]:
    """``SELECT 1 WHERE <write permitted for :consent_patient>``, built once per kind of caller."""
    actors = caller_actors(access)

    def build() -> Select[Any]:
        clause = permitted(
            _PATIENT,
            None,
            res_type,
            actors=actors,
            purpose=access.purpose,
            action="write",
            policy=policy,
            now=NOW,
        )
        return select(literal_column("1")).where(clause)

    return _write_checks.get_or_build((tuple(actors), access.purpose, res_type, policy), build)


_deciders: Lru[Select[Any]] = Lru(4096)


def deciding_consents_query(
    access: AccessContext, res_type: str | None, action: str, policy: str
) -> Select[Any]:
    """``predicates.deciding_consents`` for this kind of caller, person bound at execution."""
    actors = caller_actors(access)

    def build() -> Select[Any]:
        return deciding_consents(
            _PATIENT,
            res_type or "*",
            actors=actors,
            purpose=access.purpose,
            action=action,
            policy=policy,
            now=NOW,
        )

    return _deciders.get_or_build((tuple(actors), access.purpose, res_type, action, policy), build)


def may_write(
    conn: Connection, access: AccessContext, res_type: str, patient_id: str, *, policy: str
) -> bool:
    """The consent decision with action ``write`` for data of ``patient_id``."""
    query: Select[Any] = _write_check(access, res_type, policy)
    return conn.execute(query, {"consent_patient": patient_id}).first() is not None


def check_write(
    conn: Connection,
    access: AccessContext,
    res_type: str,
    patient_id: str | None,
    *,
    policy: str = CARE_TEAM_OPT_OUT,
) -> None:
    """Raise Forbidden (403) when ``access`` may not write ``res_type`` data of ``patient_id``.

    Consent resources are the person's own decision: only trusted clients and the person
    themself (patient context) may write them, never a partner, so that no partner grants
    itself access. AuditEvent is written by the server only (auditevent.html#6.4.4.1).
    Writes of resources of no person are decided by ``consent.ownership`` (who owns them).
    """
    if access.trusted:
        return
    if res_type == AUDIT_TYPE:
        raise Forbidden("AuditEvent resources are recorded by the server and cannot be written")
    if access.patient is not None:
        if patient_id is None and res_type not in OWN_ONLY_WRITES or patient_id == access.patient:
            return
        raise Forbidden("A patient-context token may only write data of its own person")
    if res_type in OWN_ONLY_WRITES:
        raise Forbidden(f"Only the person or a trusted client may write {res_type} resources")
    if patient_id is None:
        return
    if access.break_glass:
        return
    if not may_write(conn, access, res_type, patient_id, policy=policy):
        raise Forbidden("No consent of this person allows this client to write their data")
