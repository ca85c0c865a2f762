"""Many writes through the REST write path, stored together (DESIGN.md, A request's way).

Each write is checked when it is asked for, exactly as a single create or update
(FHIR R4 http.html#create, #update: scopes, structure and profiles, consent, unchanged
content kept as is) and stamped with its version; its SQL (resource and history rows, search
index) runs with the others' at ``flush``, a few statements for the whole batch, followed by
the consent and subscription hooks and the audit of each write in order. Reads that must see
the writes flush first (``flush_for``). For partner imports (issue 5) and the plain creates
of a transaction Bundle (``fhir.bundles``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fhir_gateway.consent import ownership
from fhir_gateway.fhir import writes
from fhir_gateway.fhir.background_flush import BackgroundFlush
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.storing import Pending, WriteResult, apply, prepare
from fhir_gateway.kit.ids import new_id
from fhir_gateway.search.indexing import Rows
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.subscriptions.hooks import SUBSCRIPTION

# Writes of these types change what consent lets a partner do: later checks must see them.
_CONSENT_TYPES = frozenset({"Consent", "CareTeam"})
# Writes of these types change what a partner owns (consent.ownership reads them stored).
_OWNERSHIP_TYPES = frozenset({"Organization", "PractitionerRole"})
# Writes whose hooks later checks or searches read: never left to the background flush.
_STORED_AT_ONCE = _CONSENT_TYPES | _OWNERSHIP_TYPES | {SUBSCRIPTION}


class WriteBatch:
    """Writes of one unit of work, flushed every ``size`` writes or when asked."""

    def __init__(self, ctx: Ctx, size: int = 2000) -> None:
        self.ctx = ctx
        self.size = size
        self.pending: list[Pending] = []
        self._keys: set[tuple[str, str]] = set()
        self._types: set[str] = set()
        # with a background flush, ``flush_later`` stores from a worker thread (issue 5)
        self.background: BackgroundFlush | None = None

    def create(
        self, res_type: str, body: dict[str, Any], assigned_id: str | None = None
    ) -> tuple[WriteResult, Rows | None]:
        """FHIR R4 http.html#create with a server-assigned id (``assigned_id``: the one a
        transaction gave a ``urn:uuid`` entry beforehand); the result and its index rows."""
        writes.check_create(self.ctx, res_type, body)
        self._before_check(res_type)
        return self._add(prepare(self.ctx, res_type, assigned_id or new_id(), body, None, "POST"))

    def update(
        self, res_type: str, res_id: str, body: dict[str, Any], current: StoredRow | None
    ) -> tuple[WriteResult, Rows | None]:
        """FHIR R4 http.html#update of ``current`` (None: create with this id); the result and
        its index rows (None when the content is unchanged: no new version)."""
        writes.check_update(self.ctx, res_type, res_id, body)
        if (res_type, res_id) in self._keys:
            self.flush()  # a second version of a resource: the first one is stored first
        self._before_check(res_type)
        return self._add(writes.prepare_update(self.ctx, res_type, res_id, body, current, None))

    def _before_check(self, res_type: str) -> None:
        if self.ctx.access.trusted:
            return
        if self._types & _CONSENT_TYPES:
            self.flush()  # the consent check of the next write must see the grants and teams
        elif self._types & _OWNERSHIP_TYPES and ownership.applies(self.ctx.access, res_type):
            self.flush()  # the ownership check of the next write must see organisations and roles

    def _add(self, prepared: Pending | WriteResult) -> tuple[WriteResult, Rows | None]:
        if isinstance(prepared, WriteResult):
            return prepared, None
        self.pending.append(prepared)
        self._keys.add((prepared.version.res_type, prepared.version.res_id))
        self._types.add(prepared.version.res_type)
        if len(self.pending) >= self.size:
            self.flush()
        return prepared.result, prepared.index.rows

    def holds(self, res_type: str) -> bool:
        """True when writes of ``res_type`` wait to be stored."""
        return res_type in self._types

    def flush_for(self, res_type: str, query: str) -> None:
        """Store the pending writes a search of ``res_type?query`` could need to see: those of
        its type, any for chained or ``_has`` parameters, consent's for a partner's filter."""
        if not self.pending:
            return
        names = [name for name, _ in parse_qsl(query.split("?")[-1], keep_blank_values=True)]
        if (
            res_type in self._types
            or any("." in name or name.startswith("_has") for name in names)
            or (not self.ctx.access.trusted and self._types & _CONSENT_TYPES)
        ):
            self.flush()

    def flush(self) -> None:
        """Store the pending writes (FhirError: none of them is, the caller rolls back), after
        those under way in the background (``settle``)."""
        self.settle()
        apply(self.ctx, self._take())

    def flush_later(self, label: object = None) -> None:
        """Store the pending writes from the background flush, the caller going on meanwhile
        (``settle`` finishes them; ``label`` names them if they fail); at once without one, or
        when a write among them changes what later checks and searches read (consent,
        ownership, subscriptions)."""
        if self.background is None or self._types & _STORED_AT_ONCE:
            self.flush()
        else:
            self.background.start(self._take(), label)

    def settle(self) -> None:
        """Finish the writes stored in the background (``BackgroundFlushFailed``: none of
        them is, the caller rolls back): their hooks and audit run now."""
        if self.background is not None:
            self.background.settle()

    def _take(self) -> list[Pending]:
        pending, self.pending = self.pending, []
        self._keys.clear()
        self._types.clear()
        return pending

    def discard(self) -> None:
        """Forget the pending writes and those under way (the unit of work is rolled back)."""
        if self.background is not None:
            self.background.abandon()
        self._take()
