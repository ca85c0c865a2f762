"""``GET /fhir/Patient/{id}/$access?actor=Organization/X&purpose=COC[&type=Task]`` (issue 4).

Explains the consent decision for an actor on a person: permit or deny, and the Consent
(FHIR R4 consent.html) or default policy that decided, with the matching rules as
reasons. The answer is a Parameters resource (FHIR R4 parameters.html; operations.html).

Who may ask (the answer reveals the person's consent choices): a trusted client; the
person themself (patient-context token); an auditor (an explicit ``system/AuditEvent.rs``
or ``user/AuditEvent.rs`` scope); or a partner holding a ``Consent`` read scope whose own
consent decision on this person permits reading their Consent resources (a coordinator
the person allowed). Anyone else gets 403.

Parameters in: ``actor`` (Organization|Practitioner|PractitionerRole|CareTeam|
RelatedPerson/<id>, required), ``purpose`` (v3 PurposeOfUse code), ``type`` (a resource
type; absent: the person's data as a whole). Out: ``decision`` (code permit|deny),
``actor``, ``purpose``, ``type``, ``decidedBy`` (Reference to the Consent) or ``policy``
(string), and one ``reason`` string per rule considered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent.compile import ACTOR_TYPES
from fhir_gateway.consent.decision import decision_for, explain
from fhir_gateway.consent.visibility import is_auditor
from fhir_gateway.kit.errors import BadRequest, Forbidden, NotFound
from fhir_gateway.storage.repository import get_current

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def _may_ask(conn: Connection, access: AccessContext, patient_id: str, policy: str) -> bool:
    if access.trusted or access.patient == patient_id or is_auditor(access):
        return True
    if access.patient is not None or not access.allows("Consent", "r"):
        return False
    return decision_for(conn, access, patient_id, "Consent", policy=policy).permit


def access_operation(
    conn: Connection,
    access: AccessContext,
    patient_id: str,
    actor: str,
    purpose: str,
    res_type: str | None,
    *,
    policy: str | None = None,
) -> dict[str, Any]:
    """The Parameters answer of ``$access`` (see the module docstring)."""
    if policy is None:
        from fhir_gateway.settings import get_settings

        policy = get_settings().consent_default_policy
    kind, _, actor_id = actor.partition("/")
    if kind not in ACTOR_TYPES or not actor_id or "/" in actor_id:
        raise BadRequest(
            f"actor must be a reference such as Organization/123 (one of {', '.join(sorted(ACTOR_TYPES))})",
            expression=["actor"],
        )
    if not _may_ask(conn, access, patient_id, policy):
        raise Forbidden(
            "$access needs a trusted client, the person themself, an auditor (system/AuditEvent.rs) "
            "or a Consent read scope with the person's consent"
        )
    row = get_current(conn, "Patient", patient_id)
    if row is None or row.deleted:
        raise NotFound(f"Patient/{patient_id} is not known")
    decision = explain(conn, patient_id, actor, purpose, res_type, policy)
    params: list[dict[str, Any]] = [
        {"name": "decision", "valueCode": decision.outcome},
        {"name": "actor", "valueReference": {"reference": actor}},
        {"name": "purpose", "valueCoding": {"system": PURPOSE_SYSTEM, "code": purpose}},
    ]
    if res_type:
        params.append({"name": "type", "valueCode": res_type})
    if decision.consent_id is not None:
        params.append(
            {"name": "decidedBy", "valueReference": {"reference": f"Consent/{decision.consent_id}"}}
        )
    else:
        params.append({"name": "policy", "valueString": decision.decided_by})
    params.extend({"name": "reason", "valueString": reason} for reason in decision.reasons)
    return {"resourceType": "Parameters", "parameter": params}
