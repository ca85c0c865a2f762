"""Write hooks: keep access grants in step with Consent and CareTeam writes (same transaction).

FHIR R4 consent.html#6.2.3: a Consent is the policy. The service calls ``after_write``
after every create, update and delete, inside the write transaction, so that granting,
revoking (status inactive, rejected, entered-in-error, draft, proposed, or a deletion) and
joining or leaving a CareTeam (careteam.html, participant.period) take effect with the
commit, on the very next request, with no cache to go stale.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhir_gateway.consent.careteam import compile_careteam
from fhir_gateway.consent.compile import compile_consent
from fhir_gateway.storage import consent_repository


def after_write(
    conn: Connection, res_type: str, res_id: str, resource: dict[str, Any] | None, *, fresh: bool = False
) -> None:
    """Called by the service after every create/update/delete, inside the write transaction.

    ``resource`` None means ``res_type/res_id`` was deleted: its grants or memberships go.
    ``fresh``: the resource's first version (its id was never stored, so it has no grants or
    memberships to drop).
    """
    if res_type == "Consent":
        grants = compile_consent(res_id, resource) if resource is not None else []
        consent_repository.replace_grants(conn, res_id, grants, fresh=fresh)
    elif res_type == "CareTeam":
        members = compile_careteam(res_id, resource) if resource is not None else []
        consent_repository.replace_members(conn, res_id, members, fresh=fresh)
