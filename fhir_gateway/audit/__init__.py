"""Audit: AuditEvent resources for every access decision (FHIR R4 auditevent.html)."""

from fhir_gateway.audit.events import audit_event_for, masked_query
from fhir_gateway.audit.store import write_audit_events

__all__ = ["audit_event_for", "masked_query", "write_audit_events"]
