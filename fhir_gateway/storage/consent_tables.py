"""Tables of the consent engine: compiled access grants and care-team membership.

FHIR R4 consent.html#6.2.3 ("Consent.provision"): a Consent's provisions are compiled on
write into flat ``consent_grant`` rows, one per (actor, class, purpose, action) of each
provision, so that the decision is a few indexed lookups inside the search query
(DESIGN.md, "Consent, the heart of it"). ``careteam_member`` holds the current and past
members of active CareTeams (FHIR R4 careteam.html, CareTeam.participant) so that "a
CareTeam as actor" and the care-team default policy resolve in SQL.

Conventions: ``"*"`` means "any" (actor, class, purpose, action, data); references are
stored as ``Type/id`` strings; periods are naive UTC, ``period_end`` exclusive.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table

from fhir_gateway.storage.tables import ID_LEN, TYPE_LEN, metadata

REF_LEN = TYPE_LEN + 1 + ID_LEN

consent_grant = Table(
    "consent_grant",
    metadata,
    Column("grant_id", Integer, primary_key=True, autoincrement=True),
    Column("consent_id", String(ID_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    # position of the provision in the tree: "0", "0.1", "0.1.0" (FHIR R4 Consent.provision.provision)
    Column("path", String(128), nullable=False),
    # permit | deny | except (a permit that only carves an exception out of its parent deny)
    Column("effect", String(8), nullable=False),
    Column("actor", String(REF_LEN), nullable=False),
    Column("res_class", String(TYPE_LEN), nullable=False),
    Column("data_id", String(ID_LEN), nullable=False, default="*"),
    Column("purpose", String(64), nullable=False),
    Column("action", String(8), nullable=False),  # read | write | *
    Column("period_start", DateTime, nullable=True),
    Column("period_end", DateTime, nullable=True),
    # a deny with nested permit provisions, which may override it (checked only then)
    Column("overridable", Boolean, nullable=False, default=False),
    Index("ix_consent_grant_actor", "actor", "effect", "res_class", "patient_id"),
    Index("ix_consent_grant_patient", "patient_id", "effect"),
    Index("ix_consent_grant_consent", "consent_id", "effect"),
)

TEAM_PREFIX = "CareTeam/"  # of a ``careteam_ref``, and of a grant's ``actor`` that is a team

careteam_member = Table(
    "careteam_member",
    metadata,
    Column("member_row", Integer, primary_key=True, autoincrement=True),
    Column("careteam_ref", String(REF_LEN), nullable=False),  # TEAM_PREFIX + <id>
    Column("patient_id", String(ID_LEN), nullable=True),  # CareTeam.subject when a Patient
    Column("member", String(REF_LEN), nullable=False),  # Organization/<id>, Practitioner/<id>...
    Column("period_start", DateTime, nullable=True),
    Column("period_end", DateTime, nullable=True),
    Index("ix_careteam_member_member", "member", "careteam_ref"),
    Index("ix_careteam_member_patient", "patient_id", "member"),
    Index("ix_careteam_member_team", "careteam_ref"),
)
