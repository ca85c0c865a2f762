"""CareTeam membership rows (FHIR R4 careteam.html, CareTeam.participant).

A CareTeam gives access only while ``status = active`` (proposed, suspended, inactive and
entered-in-error teams give none: careteam.html "status"). Each participant's ``member``
(Organization, Practitioner, PractitionerRole, RelatedPerson) and its ``onBehalfOf``
Organization becomes a member row, valid during the participant's period within the
team's period. Patient and contained members are not partners and are left out.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.consent.periods import intersect, period_bounds, reference_parts
from fhir_gateway.storage.consent_tables import TEAM_PREFIX

MEMBER_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "RelatedPerson"})


def compile_careteam(careteam_id: str, team: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``careteam_member`` rows of ``team`` (none unless active)."""
    if team.get("status") != "active":
        return []
    subject = reference_parts(team.get("subject"))
    patient_id = subject[1] if subject and subject[0] == "Patient" else None
    team_period = period_bounds(team.get("period"))
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, Any, Any]] = set()
    participants = team.get("participant")
    for participant in participants if isinstance(participants, list) else []:
        if not isinstance(participant, dict):
            continue
        start, end = intersect(team_period, period_bounds(participant.get("period")))
        for key in ("member", "onBehalfOf"):
            parts = reference_parts(participant.get(key))
            if parts is None or parts[0] not in MEMBER_TYPES:
                continue
            if key == "onBehalfOf" and parts[0] != "Organization":
                continue
            member = f"{parts[0]}/{parts[1]}"
            if (member, start, end) in seen:
                continue
            seen.add((member, start, end))
            rows.append(
                {
                    "careteam_ref": TEAM_PREFIX + careteam_id,
                    "patient_id": patient_id,
                    "member": member,
                    "period_start": start,
                    "period_end": end,
                }
            )
    return rows
