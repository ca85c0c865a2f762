"""Who is asking, and with what rights: the AccessContext bound to every request.

Built by the auth dependency from a validated access token (SMART App Launch v2,
scopes.html; SMART Backend Services) and handed to the service and repository layers,
which filter every query by it (DESIGN.md, A request's way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# SMART v2 interactions: c(reate) r(ead) u(pdate) d(elete) s(earch)
Interaction = str


@dataclass(frozen=True)
class ScopeGrant:
    """One parsed SMART scope: ``system/Task.rs`` -> (system, Task, {r, s})."""

    context: str  # "system" | "user" | "patient"
    resource_type: str  # a type or "*"
    interactions: frozenset[str]

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        return (self.resource_type in ("*", resource_type)) and interaction in self.interactions


@dataclass(frozen=True)
class AccessContext:
    """The caller of one request.

    ``organization`` is the actor consent is checked against (``Organization/<id>``);
    ``trusted`` clients are exempt from consent decisions but audited like any other;
    ``patient`` restricts a patient-context token to one person's compartment.
    """

    client_id: str
    scopes: tuple[ScopeGrant, ...]
    organization: str | None = None
    practitioner: str | None = None
    trusted: bool = False
    patient: str | None = None
    purpose: str = "COC"
    break_glass: str | None = None
    raw_scope: str = ""
    verify_client: bool = False  # a client of the built-in server: check it is not revoked
    extra: dict[str, str] = field(default_factory=dict)

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        """True when some scope grants ``interaction`` on ``resource_type``."""
        return any(s.allows(resource_type, interaction) for s in self.scopes)
