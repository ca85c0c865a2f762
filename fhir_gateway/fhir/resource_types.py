"""The resource types this server stores (issue 2, "Resources")."""

from __future__ import annotations

from fhir_gateway.kit.errors import NotFound

STORED_TYPES: frozenset[str] = frozenset(
    {
        "AuditEvent",
        "CarePlan",
        "CareTeam",
        "Consent",
        "Goal",
        "Group",
        "Organization",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Provenance",
        "RelatedPerson",
        "ServiceRequest",
        "Subscription",
        "Task",
    }
)

# Append-only types: the API never updates or deletes them (FHIR R4 auditevent.html, provenance.html).
APPEND_ONLY_TYPES: frozenset[str] = frozenset({"AuditEvent"})


def require_stored_type(res_type: str) -> str:
    """``res_type`` if stored here, else 404 (FHIR R4 http.html: unknown type)."""
    if res_type not in STORED_TYPES:
        raise NotFound(f"Resource type '{res_type}' is not supported by this server", code="not-supported")
    return res_type
