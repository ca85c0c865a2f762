"""Which stored rows a caller may see or write, as SQL (FHIR R4 consent.html#6.2.3).

DESIGN.md "A request's way": every query is filtered by consent in SQL, never in Python,
so that paging and totals stay right and a denied resource is never counted.

- trusted clients: everything (they are audited, not filtered);
- patient-context tokens (SMART ``patient/`` scopes): the person's own compartment,
  their own AuditEvents included ("who looked at my file");
- partners: rows tied to no person (Organization, Practitioner...) and rows of persons
  for whom the consent decision (``consent.predicates``) is permit; break-glass callers
  see every person's data (the request is audited with its reason). A resource of a type
  that is always about someone but names no Patient (a Task without ``for``,
  ``NAMES_ITS_PERSON``) is no one's to share: partners neither see nor write it;
- Subscription rows: only the client that created them (FHIR R4 subscription.html: a
  subscription is its owner's business; trusted clients administer all);
- Group rows (a list of persons, e.g. an organisation's caseload for bulk export): only the
  Groups the caller manages (``Group.managingEntity`` is its Organization or Practitioner);
  what a Group lists is never more than references, each person's data stays under consent;
- AuditEvent rows: only auditors (an explicit ``AuditEvent`` scope: ``system/AuditEvent.rs``;
  a ``*`` scope is not enough), trusted clients and the person themself.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
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
    or_,
    true,
)

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent.predicates import (
    CARE_TEAM_OPT_OUT,
    decided_permit,
    decided_values,
    deciding_consents,
    permitted,
    permitted_of_person,
)
from fhir_gateway.kit.errors import Forbidden
from fhir_gateway.kit.lru import Lru
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.search.indexing import NAMES_ITS_PERSON, person_element
from fhir_gateway.storage import client_repository, repository
from fhir_gateway.storage.outbox_tables import subscription
from fhir_gateway.storage.tables import idx_reference, is_shared, resource

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
    owner = access.client_id if res_type in (SUBSCRIPTION_TYPE, None) else None
    return (alias.name, res_type, *_caller_traits(access, policy), owner)


def _caller_traits(access: AccessContext, policy: str) -> tuple[Any, ...]:
    """What the filters depend on, apart from the client (that only Subscription rows do)."""
    return (
        policy,
        access.trusted,
        access.patient,
        tuple(caller_actors(access)),
        access.purpose,
        bool(access.break_glass),
        is_auditor(access),
    )


def caller_key(access: AccessContext, policy: str) -> tuple[Any, ...]:
    """Equal for two callers exactly when ``visible_clause`` builds the same filters for both."""
    return (*_caller_traits(access, policy), access.client_id)


@dataclass(frozen=True, slots=True)
class AccessViewer:
    """The ``search.compiler.Viewer`` of a caller outside a request (e.g. a subscriber)."""

    access: AccessContext
    policy: str

    def visible(self, alias: Any, res_type: str | None) -> ColumnElement[bool]:
        return visible_clause(self.access, alias, res_type, policy=self.policy)

    def visible_key(self) -> Hashable:
        return (caller_key(self.access, self.policy), False)

    def visible_of_person(self, alias: Any, res_type: str, person: ColumnElement[Any]) -> ColumnElement[bool]:
        return visible_clause(self.access, alias, res_type, policy=self.policy, person=person)


def visible_clause(
    access: AccessContext,
    alias: Any,
    res_type: str | None,
    *,
    policy: str = CARE_TEAM_OPT_OUT,
    person: ColumnElement[Any] | None = None,
) -> ColumnElement[bool]:
    """SQL condition on ``alias`` (``resource`` or ``resource_history``) for rows ``access`` may read.

    ``res_type`` None: the rows may be of several types (system search or history). Filters
    on the shared tables are built once per kind of caller and reused (they hold no time).
    ``person``: every row filtered belongs to that person (a bound value: a search of one
    person's compartment, whose condition keeps the rows to it); a partner's decision on the
    person then does not depend on the row (``predicates.permitted_of_person``).
    """
    key = _cache_key(access, alias, res_type, policy)
    if key is None:
        return _build_clause(access, alias, res_type, policy, person)
    if person is not None:
        key = (*key, "person", getattr(person, "key", None))
    return _clauses.get_or_build(key, lambda: _build_clause(access, alias, res_type, policy, person))


def _build_clause(
    access: AccessContext,
    alias: Any,
    res_type: str | None,
    policy: str,
    person: ColumnElement[Any] | None = None,
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
    consent_ok = _partner_clause(access, alias, res_type, policy, person)
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
    access: AccessContext,
    alias: Any,
    res_type: str | None,
    policy: str,
    of_person: ColumnElement[Any] | None = None,
) -> ColumnElement[bool]:
    if access.break_glass:
        return true()
    if of_person is not None and res_type not in (None, "Patient"):  # the rows are all that person's
        return permitted_of_person(
            of_person,
            alias.c.res_id,
            res_type,
            actors=caller_actors(access),
            purpose=access.purpose,
            action="read",
            policy=policy,
            now=NOW,
        )
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
    if res_type == "Patient" or res_type in NAMES_ITS_PERSON:
        return decision
    if res_type is not None:
        return or_(person.is_(None), decision)
    return or_(and_(person.is_(None), alias.c.res_type.not_in(_NAMING_THEIR_PERSON)), decision)


_NAMING_THEIR_PERSON = sorted(NAMES_ITS_PERSON)


_PATIENT = bindparam("consent_patient", type_=String())
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


_decided_reads: Lru[Select[Any]] = Lru(4096)


def decided_read_query(
    access: AccessContext, res_type: str, policy: str, *, check_client: bool
) -> Select[Any] | None:
    """A partner's read of one ``res_type`` resource by id (FHIR R4 http.html#read) as one
    statement that both filters the row by the consent decision (``visible_clause``'s rule)
    and tells what decided it (``predicates.deciding_consents``, the resource's own grants
    included: the audit trail's "decided by", ``decision.decision_from``), each
    consent subquery evaluated once (``repository.current_decided_query``). With
    ``check_client`` the row is also returned only while the client is active (``Ctx.visible``).

    None when consent does not decide this caller's reads (trusted, patient context,
    break-glass, no actor) or the type has a rule of its own (AuditEvent, Subscription, Group):
    the caller then reads through ``visible_clause``.
    """
    actors = caller_actors(access)
    if access.trusted or access.patient is not None or access.break_glass or not actors:
        return None
    if res_type in (AUDIT_TYPE, SUBSCRIPTION_TYPE, GROUP_TYPE):
        return None
    checked = access.client_id if check_client else None

    def build() -> Select[Any]:
        person = resource.c.res_id if res_type == "Patient" else resource.c.patient_id
        decided = deciding_consents(
            person,
            res_type,
            res_id=resource.c.res_id,
            actors=actors,
            purpose=access.purpose,
            action="read",
            policy=policy,
            now=NOW,
        )

        def verdict(row: Any) -> ColumnElement[bool]:
            permit = decided_permit(row.decided, row.in_team)
            if res_type != "Patient" and res_type not in NAMES_ITS_PERSON:
                permit = or_(row.patient_id.is_(None), permit)  # a row of no person: shared
            if checked is not None:
                permit = and_(permit, client_repository.active_clause(checked))
            return permit

        return repository.current_decided_query(tuple(decided.selected_columns), verdict)

    key = (res_type, tuple(actors), access.purpose, policy, checked)
    return _decided_reads.get_or_build(key, build)


def write_decision(
    conn: Connection, access: AccessContext, res_type: str, patient_id: str, *, policy: str
) -> tuple[Any, Any, Any]:
    """What decides the write of ``res_type`` data of ``patient_id``: ``(deny_by, permit_by,
    in_team)`` from ``predicates.deciding_consents`` (action ``write``): the
    decision and, for the audit trail, its reason in one statement."""
    if not caller_actors(access):
        return None, None, False  # no actor: nothing can permit
    query = deciding_consents_query(access, res_type, "write", policy)
    row = conn.execute(query, {"consent_patient": patient_id}).one()
    return decided_values(row.decided, row.in_team)


def _decides_writes(access: AccessContext, res_type: str, patient_id: str | None) -> bool:
    """Whether ``check_write`` asks the person's consent (``write_decision``) for this write."""
    return not (
        access.trusted
        or res_type == AUDIT_TYPE
        or patient_id is None
        or access.patient is not None
        or res_type in OWN_ONLY_WRITES
        or access.break_glass
        or not caller_actors(access)
    )


def write_probe(
    access: AccessContext, res_type: str, patient_id: str | None, *, policy: str
) -> tuple[Select[Any], dict[str, Any]] | None:
    """The statement (and its parameters) of ``write_decision`` for a write about to happen: the
    write unit's first statement reads its columns too (``storage.write_opening``), and
    ``check_write`` takes them as ``known``: a round trip fewer per partner create or update.
    None when ``check_write`` asks nothing of the person's consent for this write."""
    if not _decides_writes(access, res_type, patient_id):
        return None
    return deciding_consents_query(access, res_type, "write", policy), {"consent_patient": patient_id}


def write_permitted(decided: tuple[Any, Any, Any]) -> bool:
    """``write_decision``'s values say permit: no deny, and a permit or the care-team default."""
    deny_by, permit_by, in_team = decided
    return deny_by is None and (permit_by is not None or bool(in_team))


def check_write(
    conn: Connection,
    access: AccessContext,
    res_type: str,
    patient_id: str | None,
    *,
    policy: str = CARE_TEAM_OPT_OUT,
    known: tuple[Any, Any, Any] | None = None,
) -> tuple[Any, Any, Any] | None:
    """Raise Forbidden (403) when ``access`` may not write ``res_type`` data of ``patient_id``;
    the values of ``write_decision`` when the person's consent decided (None otherwise);
    ``known``: those values, already read in this transaction (``write_probe``).

    Consent resources are the person's own decision: only trusted clients and the person
    themself (patient context) may write them, never a partner, so that no partner grants
    itself access. AuditEvent is written by the server only (auditevent.html#6.4.4.1).
    Writes of resources of no person are decided by ``consent.ownership`` (who owns them).
    """
    if access.trusted:
        return None
    if res_type == AUDIT_TYPE:
        raise Forbidden("AuditEvent resources are recorded by the server and cannot be written")
    if patient_id is None and res_type in NAMES_ITS_PERSON:
        raise Forbidden(
            f"{person_element(res_type)} must reference the person (Patient/<id>): only a trusted"
            f" client may write a {res_type} of no person"
        )
    if access.patient is not None:
        if patient_id is None and res_type not in OWN_ONLY_WRITES or patient_id == access.patient:
            return None
        raise Forbidden("A patient-context token may only write data of its own person")
    if res_type in OWN_ONLY_WRITES:
        raise Forbidden(f"Only the person or a trusted client may write {res_type} resources")
    if patient_id is None or access.break_glass:
        return None
    decided = (
        known if known is not None else write_decision(conn, access, res_type, patient_id, policy=policy)
    )
    if not write_permitted(decided):
        raise Forbidden("No consent of this person allows this client to write their data")
    return decided
