"""Builders for consent tests: FHIR R4 Consent/CareTeam bodies, stored rows, callers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, String, bindparam, func, select

from fhir_gateway.auth.context import AccessContext, ScopeGrant
from fhir_gateway.consent import hooks
from fhir_gateway.consent.visibility import visible_clause
from fhir_gateway.storage import repository
from fhir_gateway.storage.tables import resource

LOINC_PRIVACY = {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}
SCOPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
}
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"


def day(offset: int) -> str:
    """A FHIR date ``offset`` days from today."""
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def provision(
    kind: str | None = None,
    *,
    actors: list[str] | None = None,
    purposes: list[str] | None = None,
    classes: list[str] | None = None,
    actions: list[str] | None = None,
    data: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    nested: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Consent.provision (FHIR R4 consent.html)."""
    out: dict[str, Any] = {}
    if kind:
        out["type"] = kind
    if start or end:
        out["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if actors:
        out["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": {"reference": a},
            }
            for a in actors
        ]
    if actions:
        out["action"] = [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}
            for a in actions
        ]
    if purposes:
        out["purpose"] = [{"system": PURPOSE_SYSTEM, "code": p} for p in purposes]
    if classes:
        out["class"] = [{"system": TYPES_SYSTEM, "code": c} for c in classes]
    if data:
        out["data"] = [{"meaning": "instance", "reference": {"reference": d}} for d in data]
    if nested:
        out["provision"] = nested
    return out


def consent(
    patient: str, prov: dict[str, Any], *, status: str = "active", date: str = "2024-01-01"
) -> dict[str, Any]:
    """A FHIR R4 Consent (scope patient-privacy, category LOINC 59284-0)."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": SCOPE,
        "category": [LOINC_PRIVACY],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": date,
        "provision": prov,
    }


def careteam(
    patient: str, members: list[tuple[str, str | None, str | None]], status: str = "active"
) -> dict[str, Any]:
    """A CareTeam whose participants are ``(member, period start, period end)``."""
    participants = []
    for member, start, end in members:
        p: dict[str, Any] = {"member": {"reference": member}}
        if start or end:
            p["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
        participants.append(p)
    return {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "participant": participants,
    }


def compartment(body: dict[str, Any]) -> str | None:
    """The patient compartment id of the test resources (a stand-in for search indexing)."""
    kind = body["resourceType"]
    if kind == "Patient":
        return str(body["id"])
    for key in ("patient", "subject", "for"):
        ref = body.get(key)
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
            return str(ref["reference"]).split("/", 1)[1]
    return None


def store(conn: Connection, res_type: str, res_id: str, body: dict[str, Any] | None) -> None:
    """Create, update or (body None) delete a resource, with the consent hook, like the service."""
    moment = datetime.now(UTC).replace(tzinfo=None)
    current = repository.get_current(conn, res_type, res_id)
    if body is not None:
        body = {**body, "id": res_id}
    patient = compartment(body) if body is not None else (current.patient_id if current else None)
    content = json.dumps(body) if body is not None else None
    if current is None:
        assert content is not None
        repository.insert_first_version(conn, res_type, res_id, content, patient, moment)
    else:
        assert repository.write_next_version(
            conn, current, content, patient, moment, "PUT" if body else "DELETE"
        )
    hooks.after_write(conn, res_type, res_id, body)


def caller(
    org: str | None = None,
    *,
    purpose: str = "TREAT",
    practitioner: str | None = None,
    trusted: bool = False,
    patient: str | None = None,
    break_glass: str | None = None,
    scope: str = "*",
) -> AccessContext:
    return AccessContext(
        client_id="client-test",
        scopes=(ScopeGrant("patient" if patient else "system", scope, frozenset("cruds")),),
        organization=org,
        practitioner=practitioner,
        trusted=trusted,
        patient=patient,
        purpose=purpose,
        break_glass=break_glass,
    )


def visible(conn: Connection, access: AccessContext, res_type: str | None, policy: str) -> set[str]:
    """``Type/id`` of the current rows ``access`` may read, filtered in SQL."""
    query = select(resource.c.res_type, resource.c.res_id).where(
        visible_clause(access, resource, res_type, policy=policy)
    )
    if res_type is not None:
        query = query.where(resource.c.res_type == res_type)
    return {f"{r.res_type}/{r.res_id}" for r in conn.execute(query)}


def visible_of_person(
    conn: Connection, access: AccessContext, res_type: str, policy: str, person: str
) -> set[str]:
    """``visible`` for the rows of ``person`` as a search of one person's compartment filters
    them (``visible_clause(..., person=...)``, the compartment condition beside it)."""
    one = bindparam("one_person", type_=String())
    query = select(resource.c.res_type, resource.c.res_id).where(
        resource.c.res_type == res_type,
        resource.c.patient_id == one,
        visible_clause(access, resource, res_type, policy=policy, person=one),
    )
    return {f"{r.res_type}/{r.res_id}" for r in conn.execute(query, {"one_person": person})}


def count_visible(conn: Connection, access: AccessContext, res_type: str, policy: str) -> int:
    query = (
        select(func.count())
        .select_from(resource)
        .where(resource.c.res_type == res_type, visible_clause(access, resource, res_type, policy=policy))
    )
    return int(conn.execute(query).scalar_one())
