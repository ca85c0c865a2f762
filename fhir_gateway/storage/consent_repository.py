"""SQL of the consent engine: grant and membership rows (DESIGN.md, Storage).

Rows are replaced wholesale on every write of their Consent or CareTeam, inside the
caller's write transaction, so that a revocation takes effect on the very next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from fhir_gateway.storage.bulk import insert_numbered
from fhir_gateway.storage.consent_tables import TEAM_PREFIX, careteam_member, consent_grant


def replace_grants(
    conn: Connection, consent_id: str, rows: Sequence[dict[str, Any]], *, fresh: bool = False
) -> None:
    """Drop the grants of ``Consent/consent_id`` (none when ``fresh``) and store ``rows`` instead."""
    if not fresh:
        conn.execute(delete(consent_grant).where(consent_grant.c.consent_id == consent_id))
    insert_numbered(conn, consent_grant, rows)


def replace_members(
    conn: Connection, careteam_id: str, rows: Sequence[dict[str, Any]], *, fresh: bool = False
) -> None:
    """Drop the member rows of ``CareTeam/careteam_id`` (none when ``fresh``) and store ``rows``
    instead."""
    if not fresh:
        ref = TEAM_PREFIX + careteam_id
        conn.execute(delete(careteam_member).where(careteam_member.c.careteam_ref == ref))
    insert_numbered(conn, careteam_member, rows)


def grants_of_patient(conn: Connection, patient_id: str) -> list[dict[str, Any]]:
    """Every grant row about ``patient_id`` (for explanations, not for filtering)."""
    g = consent_grant
    query = select(g).where(g.c.patient_id == patient_id).order_by(g.c.consent_id, g.c.path, g.c.grant_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def current_teams(
    conn: Connection, members: Sequence[str], now: datetime, *, of_person: str, named: Sequence[str]
) -> list[tuple[str, str | None]]:
    """``(CareTeam/<id>, patient id)`` of the teams one of ``members`` currently belongs to
    among those of person ``of_person`` and those ``named`` (the actors of the person's grants):
    the only teams that can decide on that person, of the thousands a service may be in."""
    m = careteam_member
    query = (
        select(m.c.careteam_ref, m.c.patient_id)
        .where(
            m.c.member.in_(list(members)),
            or_(m.c.patient_id == of_person, m.c.careteam_ref.in_(list(named))),
            or_(m.c.period_start.is_(None), m.c.period_start <= now),
            or_(m.c.period_end.is_(None), m.c.period_end > now),
        )
        .distinct()
        .order_by(m.c.careteam_ref)
    )
    return [(r.careteam_ref, r.patient_id) for r in conn.execute(query)]
