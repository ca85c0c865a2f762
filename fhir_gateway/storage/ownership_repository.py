"""What the partner write rule for shared resources reads (``consent.ownership``; the only SQL of it).

Both questions are answered from the search index of the current versions (deleted resources
have no index rows): an Organization's ``partof`` (FHIR R4 organization.html, ``partOf``) and
the ``organization`` of the PractitionerRoles naming a Practitioner (practitionerrole.html).
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, select

from fhir_gateway.storage.tables import idx_reference

_ROLE = idx_reference.alias("idx_reference_role")
_ROLE_ORG = idx_reference.alias("idx_reference_role_org")


def parent_organization(conn: Connection, org_id: str) -> str | None:
    """The id of the Organization that ``Organization/org_id`` is ``partOf``, if any."""
    r = idx_reference
    query = select(r.c.target_id).where(
        r.c.res_type == "Organization",
        r.c.res_id == org_id,
        r.c.param == "partof",
        r.c.target_type == "Organization",
    )
    found = conn.execute(query.limit(1)).scalar()
    return str(found) if found is not None else None


def role_organizations(conn: Connection, practitioner_id: str) -> list[str]:
    """The Organization ids of the PractitionerRoles naming ``Practitioner/practitioner_id``."""
    role, org = _ROLE, _ROLE_ORG
    query = (
        select(org.c.target_id)
        .distinct()
        .select_from(role)
        .join(
            org,
            and_(
                org.c.res_type == "PractitionerRole",
                org.c.res_id == role.c.res_id,
                org.c.param == "organization",
                org.c.target_type == "Organization",
            ),
        )
        .where(
            role.c.res_type == "PractitionerRole",
            role.c.param == "practitioner",
            role.c.target_type == "Practitioner",
            role.c.target_id == practitioner_id,
        )
    )
    return [str(found) for found in conn.execute(query).scalars() if found is not None]
