"""The requester of an export job, kept with it so that the worker exports as them.

Bulk Data IG v2 export.html: the files hold what the requester may see. The job stores the
AccessContext of the kick-off (client, organisation, practitioner, scopes, purpose, patient
context); the worker rebuilds it and reads with the very visibility filter of a REST search,
so that the persons' consent is evaluated **at export time** (a consent revoked after the
kick-off stops the export of that person's data). Break-glass never carries over to a job.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes


def owner_record(access: AccessContext) -> dict[str, Any]:
    """What the job keeps of ``access`` (JSON-serialisable)."""
    return {
        "client_id": access.client_id,
        "scope": access.raw_scope,
        "organization": access.organization,
        "practitioner": access.practitioner,
        "trusted": access.trusted,
        "patient": access.patient,
        "purpose": access.purpose,
        "verify_client": access.verify_client,
        "extra": dict(access.extra),
    }


def owner_access(record: dict[str, Any]) -> AccessContext:
    """The requester's AccessContext, rebuilt from ``owner_record``."""
    return AccessContext(
        client_id=str(record["client_id"]),
        scopes=parse_scopes(str(record.get("scope") or "")),
        organization=record.get("organization"),
        practitioner=record.get("practitioner"),
        trusted=bool(record.get("trusted")),
        patient=record.get("patient"),
        purpose=str(record.get("purpose") or "COC"),
        raw_scope=str(record.get("scope") or ""),
        verify_client=bool(record.get("verify_client")),
        extra={str(k): str(v) for k, v in (record.get("extra") or {}).items()},
    )
