"""The writes of one bulk operation audited per person (FHIR R4 auditevent.html).

A partner file import is one access by one client, with thousands of writes; so is a
transaction Bundle (http.html#transaction: one interaction, its entries written together or
not at all). Instead of one AuditEvent per write (as a single REST write gets), their
writes are gathered and become one AuditEvent per person, interaction (create, update,
patch) and deciding Consent or policy, for every window of up to ``WINDOW`` writes: the
event's ``subtype`` is the interaction plus the operation (``import-partner``; the
restful-interaction ``transaction``), and it has one ``entity`` per resource written (what,
type 2, role 4) with the person (role 1). Nothing is lost for the auditor (who, when, which
organisation, what resources, which person, what decided), the person still finds the
events about them (``patient_id``), and the audit trail costs a few events per person
instead of one per row. Refused writes are never grouped: they are audited one by one, as
for REST; writes rolled back are not audited as done.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.audit.events import AUDIT_SYSTEM, INTERACTION_SYSTEM, _coding, _entity, audit_event_for
from fhir_gateway.auth.context import AccessContext

WINDOW = 20_000  # writes kept before their AuditEvents are made (memory flat in file size)
WRITE_INTERACTIONS = frozenset({"create", "update", "patch"})

Write = tuple[str, str | None, str, str, str | None]  # interaction, person, type, id, decided by


class GroupedWrites:
    """The audited writes of one operation not yet turned into AuditEvents."""

    def __init__(self, operation: str, display: str, system: str = AUDIT_SYSTEM) -> None:
        self.operation = operation
        self.display = display
        self.system = system
        self.writes: list[Write] = []

    def add(
        self, interaction: str, res_type: str, res_id: str, patient_id: str | None, decided_by: str | None
    ) -> None:
        self.writes.append((interaction, patient_id, res_type, res_id, decided_by))

    def mark(self) -> int:
        return len(self.writes)

    def forget(self, mark: int = 0) -> None:
        """The writes since ``mark`` were rolled back: they are not audited as done."""
        del self.writes[mark:]

    def full(self) -> bool:
        return len(self.writes) >= WINDOW

    def drain(self, access: AccessContext) -> list[dict[str, Any]]:
        """One AuditEvent per (interaction, person, decision) of the writes gathered."""
        groups: dict[tuple[str, str | None, str | None], list[tuple[str, str]]] = {}
        for interaction, patient_id, res_type, res_id, decided_by in self.writes:
            groups.setdefault((interaction, patient_id, decided_by), []).append((res_type, res_id))
        self.writes = []
        return [
            self._event(access, interaction, patient_id, decided_by, resources)
            for (interaction, patient_id, decided_by), resources in groups.items()
        ]

    def _event(
        self,
        access: AccessContext,
        interaction: str,
        patient_id: str | None,
        decided_by: str | None,
        resources: list[tuple[str, str]],
    ) -> dict[str, Any]:
        event = audit_event_for(access, interaction, None, None, patient_id, True, decided_by, None)
        written = [
            _entity(f"{res_type}/{res_id}", "2", "4")
            for res_type, res_id in dict.fromkeys(resources)
            if (res_type, res_id) != ("Patient", patient_id)
        ]
        event["entity"] = written + list(event.get("entity", []))
        event["subtype"].append(_coding(self.system, self.operation, self.display))
        return event


def transaction_writes() -> GroupedWrites:
    """The gathering of a transaction Bundle's writes (subtype restful-interaction ``transaction``)."""
    return GroupedWrites("transaction", "transaction", INTERACTION_SYSTEM)
