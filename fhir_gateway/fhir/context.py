"""The per-request unit of work handed to the FHIR service functions.

DESIGN.md, A request's way: the request owns the transaction; services flush, never
commit. Audit events gathered while serving are written after the main transaction, in a
short transaction of their own, so that a refused request is audited too.

A revoked client is refused on its very next request (RFC 7009 spirit: revocation is
immediate). Write units check the client first, in a statement that also reads the
subscriptions' stamp (``storage.write_opening``, for ``subscriptions.active``). Read units
fold the check into their first consent-filtered statement (``Ctx.visible``): a revoked
client's statement matches no row; a statement that did return rows proves the client was
active when it ran, so no separate round trip is needed. When no such statement returned a
row (a 404, an empty page, an operation that does not filter), the unit checks the client
explicitly before answering, and a revoked client gets its 401 with nothing audited as
served.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Select, and_

from fhir_gateway.audit.events import AuditItem, AuditSink, Query, audit_event_for, audit_record
from fhir_gateway.audit.grouped import WRITE_INTERACTIONS, GroupedWrites
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.tokens import invalid_token
from fhir_gateway.auth.validation import ensure_client_active
from fhir_gateway.consent import ownership, visibility
from fhir_gateway.consent.decision import decision_for, decision_from
from fhir_gateway.consent.predicates import decided_values
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError, Forbidden
from fhir_gateway.kit.lru import Lru
from fhir_gateway.observability.metrics import CONSENT_DENIALS
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository, repository
from fhir_gateway.storage.audit_refs import AUDIT_EVENT
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.write_opening import open_write


@dataclass
class Ctx:
    """One request's database connection, caller and settings."""

    conn: Connection
    access: AccessContext
    settings: Settings
    audit_events: list[AuditItem] = field(default_factory=list)
    # the accesses are kept as records, which the audit writer turns into AuditEvents
    # (``audit.events.audit_record``); False where the unit's code reads its events
    compact_audit: bool = False
    # lookups that stay true for the whole transaction (e.g. the decision of a write check)
    memo: dict[Any, Any] = field(default_factory=dict)
    # a bulk operation's successful writes, audited per person (audit.grouped) instead of one by one
    grouped_writes: GroupedWrites | None = None
    # the caller's client still has to be proven active (read units, see the module docstring)
    client_unverified: bool = False
    # the deployment's paging cursor key (``auth.paging_key``), for units that answer paged Bundles
    cursor_key: bytes | None = None
    # the subscriptions' stamp of the unit (``subscriptions.active``): read by its first statement
    # (``storage.write_opening``) or with the subscriptions; None when unknown or when this
    # transaction changed the subscriptions
    subscriptions_stamp: str | None = None
    # the unit writes one resource, as its last statement (a REST create: ``fhir.storing.apply``)
    single_write: bool = False
    _client_check_in_sql: bool = False

    @property
    def paging_key(self) -> bytes:
        """The HMAC key of paging cursors (``fhir.cursors``); only REST units are given it."""
        if self.cursor_key is None:
            raise RuntimeError("this unit of work was opened without the paging cursor key")
        return self.cursor_key

    def visible(self, alias: Any, res_type: str | None) -> ColumnElement[bool]:
        """SQL filter of the rows of ``alias`` this caller may read (scopes and consent).

        While the client is unverified the filter also requires the client to be active.
        """
        clause = visibility.visible_clause(
            self.access, alias, res_type, policy=self.settings.consent_default_policy
        )
        return self._checking_client(clause)

    def visible_of_person(self, alias: Any, res_type: str, person: ColumnElement[Any]) -> ColumnElement[bool]:
        """``visible`` for rows all of the person ``person`` (``search.compiler.Viewer``)."""
        clause = visibility.visible_clause(
            self.access, alias, res_type, policy=self.settings.consent_default_policy, person=person
        )
        return self._checking_client(clause)

    def _checking_client(self, clause: ColumnElement[bool]) -> ColumnElement[bool]:
        """``clause``, with the client check while the client is unverified."""
        if not self.client_unverified:
            return clause
        self._client_check_in_sql = True
        return _and_client_active(clause, self.access.client_id)

    def visible_key(self) -> Hashable:
        """Names the filters ``visible`` builds for this caller now (statement caches key on it).

        While the client is unverified those filters carry the client check, and so does a
        statement cached under this key: executing it proves the client as ``visible`` does.
        """
        if self.client_unverified:
            self._client_check_in_sql = True
        return (
            visibility.caller_key(self.access, self.settings.consent_default_policy),
            self.client_unverified,
        )

    def rows_returned(self, count: int) -> None:
        """A statement filtered by ``visible`` returned ``count`` rows: >0 proves the client active."""
        if count > 0 and self._client_check_in_sql:
            self.client_unverified = False

    def verify_client_if_needed(self) -> None:
        """401 for a revoked client unless a filtered statement already proved it active."""
        if self.client_unverified:
            try:
                ensure_client_active(self.conn, self.access.client_id)
            except FhirError:
                self.audit_events.clear()  # nothing was served to a revoked client
                raise
            self.client_unverified = False

    def require_scope(self, res_type: str, interaction: str) -> None:
        """403 unless a SMART scope grants ``interaction`` (c r u d s) on ``res_type``."""
        if not self.access.allows(res_type, interaction):
            raise Forbidden(
                f"The token's scopes do not allow '{interaction}' on {res_type} "
                f"(SMART scope {res_type}.{interaction} or wider is needed)"
            )

    def check_write(self, res_type: str, patient_id: str | None, interaction: str = "update") -> None:
        """403 unless consent lets this caller write data of ``patient_id`` (refusals audited).

        What decided is remembered for the audit of the write (no second statement)."""
        try:
            decided = visibility.check_write(
                self.conn,
                self.access,
                res_type,
                patient_id,
                policy=self.settings.consent_default_policy,
                known=self.memo.get((_WRITE_DECISION, res_type, patient_id)),
            )
        except Forbidden:
            self.audit(interaction, res_type, None, patient_id, ok=False)
            raise
        if decided is not None:
            deny_by, permit_by, in_team = decided
            decision = decision_from(deny_by, permit_by, in_team, self.settings.consent_default_policy)
            self.memo[(_WRITE_DECIDED_BY, res_type, patient_id)] = decision.decided_by

    def decided_read(self, res_type: str) -> Select[Any] | None:
        """The read-by-id statement of this caller when consent decides its reads
        (``visibility.decided_read_query``): filtered, with what decided, and with the client
        check while the client is unverified (``rows_returned`` then proves it)."""
        query = visibility.decided_read_query(
            self.access,
            res_type,
            self.settings.consent_default_policy,
            check_client=self.client_unverified,
        )
        if query is not None and self.client_unverified:
            self._client_check_in_sql = True
        return query

    def decided_by(self, values: tuple[Any, ...]) -> str | None:
        """The audit trail's "decided by" from the deciding values read with a row
        (``decided_read``; none: None)."""
        if not values:
            return None
        return decision_from(*decided_values(*values), self.settings.consent_default_policy).decided_by

    def check_shared_write(
        self,
        res_type: str,
        res_id: str,
        new: dict[str, Any] | None,
        old: StoredRow | None,
        interaction: str,
        *,
        unchanged: bool = False,
    ) -> None:
        """403 unless this caller may write the shared (no person's) resource ``res_type/res_id``
        from ``old`` (None: a create) to ``new`` (None: a delete), or be answered ``old`` as is
        (``unchanged``): consent.ownership; refusals audited."""
        if not ownership.applies(self.access, res_type):
            return
        stored = jsonutil.loads(old.content) if old is not None and old.content is not None else None
        try:
            if unchanged and stored is not None:
                ownership.check_unchanged(self.conn, self.access, res_type, res_id, stored)
            else:
                ownership.check_write(self.conn, self.access, res_type, res_id, new, stored)
        except Forbidden:
            self.audit(interaction, res_type, res_id if stored is not None else None, None, ok=False)
            raise

    def hidden_exists(self, res_type: str, res_id: str) -> StoredRow | None:
        """For a 404 given to a partner: the row consent hid, if any (to audit the refusal)."""
        if self.access.trusted:
            return None
        return repository.get_current(self.conn, res_type, res_id)

    def audit(
        self,
        interaction: str,
        res_type: str | None,
        res_id: str | None,
        patient_id: str | None,
        *,
        ok: bool = True,
        query: Query | None = None,
        decided_by: str | None = None,
    ) -> None:
        """Record this access for the audit trail, with the Consent or policy that decided it
        (``decided_by`` when the caller already knows it, see ``decided_read``)."""
        if not ok:
            CONSENT_DENIALS.labels(res_type or "").inc()
        if decided_by is None:
            decided_by = self.decided_by_now(interaction, res_type, patient_id, ok=ok)
        self._record(interaction, res_type, res_id, patient_id, ok, query, decided_by)

    def audit_people(
        self,
        interaction: str,
        res_type: str | None,
        people: Iterable[str | None],
        *,
        query: Query | None = None,
    ) -> None:
        """Record an access that answered resources of many persons (a search, an export, a
        worklist): one AuditEvent per person among ``people`` (their resources' ``patient_id``),
        each naming its person, so that a person's own audit trail (``AuditEvent?patient=``)
        shows every access that returned their data without revealing the others'; one naming
        no person when ``people`` is empty. IHE Basic Audit Log Patterns (BALP), "Query": one
        AuditEvent per Patient the results are about; FHIR R4 auditevent.html (entity, role
        Patient). What decided is the consent filter every row passed in SQL: the deciding
        Consent of one person is recorded by the reads (``decided_read``), not looked up again.
        An access to AuditEvents names no one: they are the trail itself, and naming their
        persons would grow a person's trail at each review of it (and move back the pages of a
        newest-first reading of it by as many events as each page adds)."""
        decided_by = "trusted client" if self.access.trusted else None
        named = () if res_type == AUDIT_EVENT else people
        persons: list[str | None] = list(dict.fromkeys(p for p in named if p is not None))
        for person in persons or [None]:
            self._record(interaction, res_type, None, person, True, query, decided_by)

    def _record(
        self,
        interaction: str,
        res_type: str | None,
        res_id: str | None,
        patient_id: str | None,
        ok: bool,
        query: Query | None,
        decided_by: str | None,
    ) -> None:
        if self.grouped_writes is not None and ok and query is None and interaction in WRITE_INTERACTIONS:
            assert res_type is not None
            assert res_id is not None
            self.grouped_writes.add(interaction, res_type, res_id, patient_id, decided_by)
            return
        make = audit_record if self.compact_audit else audit_event_for
        self.audit_events.append(
            make(self.access, interaction, res_type, res_id, patient_id, ok, decided_by, query)
        )

    def decided_by_now(
        self, interaction: str, res_type: str | None, patient_id: str | None, *, ok: bool = True
    ) -> str | None:
        """What decides ``interaction``: the decision remembered by this unit's write check,
        else the person's consent now, else the client's trust."""
        write = interaction not in _READ_INTERACTIONS
        remembered = self.memo.get((_WRITE_DECIDED_BY, res_type, patient_id)) if ok and write else None
        if remembered is not None:
            return str(remembered)
        if patient_id is not None:
            return decision_for(
                self.conn,
                self.access,
                patient_id,
                res_type,
                action="write" if write else "read",
                policy=self.settings.consent_default_policy,
            ).decided_by
        return "trusted client" if self.access.trusted else None


_with_client_check: Lru[tuple[ColumnElement[bool], ColumnElement[bool]]] = Lru(4096)


def _and_client_active(clause: ColumnElement[bool], client_id: str) -> ColumnElement[bool]:
    """``clause`` AND the client is active, built once per shared filter and client.

    Statement caches downstream key on the filter object, so the combination must be a
    shared object too. The entry holds ``clause`` itself: its id cannot be reused meanwhile.
    """

    def build() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        return clause, and_(clause, client_repository.active_clause(client_id))

    key = (id(clause), client_id)
    owner, combined = _with_client_check.get_or_build(key, build)
    if owner is not clause:
        owner, combined = build()
        _with_client_check.put(key, (owner, combined))
    return combined


_WRITE_DECIDED_BY = "write decided by"  # memo key: what decided a write checked in this unit
_WRITE_DECISION = "write decision"  # memo key: the consent's values read by the unit's first statement
_READ_INTERACTIONS = frozenset(
    {
        "read",
        "vread",
        "search-type",
        "search-system",
        "history-instance",
        "history-type",
        "history-system",
        "operation",
        "notify",
    }
)


@contextmanager
def unit_of_work(
    database: Database,
    settings: Settings,
    access: AccessContext,
    *,
    write: bool,
    audit_sink: AuditSink,
) -> Iterator[Ctx]:
    """Open the request's transaction; commit on success, rollback on error, then audit."""
    events: list[AuditItem] = []
    try:
        with database.transaction(write=write) as conn:
            stamp = None
            if access.verify_client and write:
                stamp = _open_write_unit(conn, access, settings, None, {})
            elif access.verify_client:
                ensure_client_active(conn, access.client_id)
            yield Ctx(conn, access, settings, events, subscriptions_stamp=stamp)
    finally:
        audit_sink(events)


def _open_write_unit(
    conn: Connection,
    access: AccessContext,
    settings: Settings,
    probe: tuple[str, str | None] | None,
    memo: dict[Any, Any],
) -> str | None:
    """``ensure_client_active`` as a write unit's first statement, which also reads the
    subscriptions' stamp (``storage.write_opening``) and, given the ``probe`` (type, person) of
    the write to come, the person's consent decision (``visibility.write_probe``, kept in
    ``memo`` for ``Ctx.check_write``); the stamp."""
    policy = settings.consent_default_policy
    asked = visibility.write_probe(access, *probe, policy=policy) if probe is not None else None
    opening = open_write(conn, access.client_id, *(asked or ()))
    if not opening.client_active:
        raise invalid_token("client revoked or unknown")
    if probe is not None and asked is not None:
        memo[(_WRITE_DECISION, *probe)] = decided_values(*opening.also)
    return opening.subscriptions_stamp


T = TypeVar("T")


async def run_unit(
    database: Database,
    settings: Settings,
    access: AccessContext,
    work: Callable[[Ctx], T],
    *,
    write: bool,
    audit_sink: AuditSink,
    cursor_key: bytes | None = None,
    brief: bool = False,
    write_probe: tuple[str, str | None] | None = None,
    single_write: bool = False,
) -> T:
    """``work(ctx)`` in the request's transaction (``Database.run``, ``brief`` for a read bounded by
    one REST interaction's page), then audit, as ``unit_of_work``. ``write_probe``: the type and
    person of the write ``work`` will check first (``Ctx.check_write``), whose consent decision the
    unit's first statement then reads too. ``single_write``: ``work`` writes one resource and
    nothing after it (``Ctx.single_write``)."""
    events: list[AuditItem] = []

    def in_transaction(conn: Connection) -> T:
        memo: dict[Any, Any] = {}
        stamp = None
        if access.verify_client and write:
            stamp = _open_write_unit(conn, access, settings, write_probe, memo)
        ctx = Ctx(
            conn,
            access,
            settings,
            events,
            memo=memo,
            compact_audit=True,
            client_unverified=access.verify_client and not write,
            cursor_key=cursor_key,
            subscriptions_stamp=stamp,
            single_write=single_write,
        )
        try:
            result = work(ctx)
        except FhirError:
            ctx.verify_client_if_needed()  # a revoked client gets 401, not the 404 it caused
            raise
        ctx.verify_client_if_needed()
        return result

    try:
        return await database.run(in_transaction, write=write, brief=brief)
    finally:
        audit_sink(events)
