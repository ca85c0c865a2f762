"""One valid example per profile, and defects (one each) with the element they break.

A defect is a JSON Patch (RFC 6902) applied to the valid example and the FHIRPath
``expression`` the OperationOutcome must name.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

BASE = "https://fhir-gateway.org/fhir/StructureDefinition/"
NIR = "urn:oid:1.2.250.1.213.1.4.8"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
R420 = "https://mos.esante.gouv.fr/NOS/TRE_R420-DroitPrestation/FHIR/TRE-R420-DroitPrestation"
R327 = "https://mos.esante.gouv.fr/NOS/TRE_R327-TypeDecision/FHIR/TRE-R327-TypeDecision"
CS = "https://fhir-gateway.org/fhir/CodeSystem/"
PIN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PIN"}]}


def _meta(name: str) -> dict[str, Any]:
    return {"profile": [BASE + name]}


VALID: dict[str, dict[str, Any]] = {
    "fg-patient": {
        "resourceType": "Patient",
        "meta": _meta("fg-patient"),
        "identifier": [
            {"system": NIR, "value": "178066942012368"},
            {
                "type": PIN,
                "system": "urn:fhir-gateway:mdph-042:individu",
                "value": "I0007788",
                "assigner": {"reference": "Organization/mdph-042"},
            },
            {"system": "urn:fhir-gateway:saad-1:beneficiaire", "value": "B-0042"},
        ],
        "name": [{"use": "official", "family": "DURAND", "given": ["Marc"]}],
        "gender": "male",
        "birthDate": "1978-06-02",
    },
    "fg-organization": {
        "resourceType": "Organization",
        "meta": _meta("fg-organization"),
        "identifier": [
            {"system": FINESS, "value": "420002345"},
            {"system": "https://sirene.fr", "value": "12345678901234"},
        ],
        "name": "SESSAD Les Tilleuls",
    },
    "fg-careplan-coordination": {
        "resourceType": "CarePlan",
        "meta": _meta("fg-careplan-coordination"),
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": CS + "careplan-category", "code": "plan-aide"}]}],
        "title": "Plan d'aide 2026",
        "subject": {"reference": "Patient/p1"},
        "author": {"reference": "Organization/saad-1"},
        "activity": [
            {
                "detail": {
                    "status": "in-progress",
                    "code": {"coding": [{"system": CS + "nature-aide", "code": "aide-humaine"}]},
                    "performer": [{"reference": "Organization/saad-1"}],
                }
            },
            {"reference": {"reference": "ServiceRequest/right-1"}},
        ],
    },
    "fg-careteam-circle-of-care": {
        "resourceType": "CareTeam",
        "meta": _meta("fg-careteam-circle-of-care"),
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {
                "role": [{"coding": [{"system": CS + "careteam-role", "code": "coordinateur"}]}],
                "member": {"reference": "Organization/dac-1"},
                "period": {"start": "2026-01-01"},
            },
            {
                "role": [{"coding": [{"system": CS + "careteam-role", "code": "service-aide-domicile"}]}],
                "member": {"reference": "Organization/saad-1"},
                "period": {"start": "2026-02-01"},
            },
            {
                "role": [{"coding": [{"system": CS + "careteam-role", "code": "aidant"}]}],
                "member": {"reference": "RelatedPerson/rp-1"},
                "period": {"start": "2026-01-01"},
            },
        ],
    },
    "fg-task-orientation-follow-up": {
        "resourceType": "Task",
        "meta": _meta("fg-task-orientation-follow-up"),
        "status": "accepted",
        "businessStatus": {"coding": [{"system": CS + "orientation-status", "code": "ATTENTE"}]},
        "intent": "order",
        "code": {"coding": [{"system": CS + "task-code", "code": "suivi-orientation"}]},
        "basedOn": [{"reference": "ServiceRequest/right-1"}],
        "for": {"reference": "Patient/p1"},
        "authoredOn": "2025-11-21",
        "requester": {"reference": "Organization/mdph-042"},
        "owner": {"reference": "Organization/sessad-1"},
    },
    "fg-task-home-care-visit": {
        "resourceType": "Task",
        "meta": _meta("fg-task-home-care-visit"),
        "identifier": [{"system": "urn:fhir-gateway:saad-1:intervention", "value": "INT-1"}],
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": CS + "prestation-aide-domicile", "code": "toilette"}]},
        "for": {"reference": "Patient/p1"},
        "owner": {"reference": "Organization/saad-1"},
        "restriction": {"period": {"start": "2026-03-02T08:00:00+01:00", "end": "2026-03-02T09:00:00+01:00"}},
        "executionPeriod": {"start": "2026-03-02T08:05:00+01:00", "end": "2026-03-02T09:02:00+01:00"},
        "input": [
            {
                "type": {"coding": [{"system": CS + "intervention-detail", "code": "intervenant"}]},
                "valueString": "M-17",
            }
        ],
        "output": [
            {
                "type": {"coding": [{"system": CS + "intervention-detail", "code": "appreciation-sante"}]},
                "valueInteger": 4,
            }
        ],
    },
    "fg-task-vigilance-alert": {
        "resourceType": "Task",
        "meta": _meta("fg-task-vigilance-alert"),
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": CS + "task-code", "code": "alerte-vigilance"}]},
        "description": "Appréciation <= 2 lors de l'intervention INT-1",
        "focus": {"reference": "Task/visit-1"},
        "for": {"reference": "Patient/p1"},
        "requester": {"reference": "Organization/saad-1"},
        "owner": {"reference": "Organization/dac-1"},
    },
    "fg-servicerequest-mdph-right": {
        "resourceType": "ServiceRequest",
        "meta": _meta("fg-servicerequest-mdph-right"),
        "identifier": [{"system": "urn:fhir-gateway:mdph-042:decision", "value": "DEC-2025-3410"}],
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [{"system": R420, "code": "5"}]},
            {"coding": [{"system": R327, "code": "6"}]},
        ],
        "code": {"coding": [{"system": R420, "code": "5.1"}]},
        "subject": {"reference": "Patient/p1"},
        "occurrencePeriod": {"start": "2025-12-01", "end": "2030-11-30"},
        "authoredOn": "2025-11-28",
        "requester": {"reference": "Organization/mdph-042"},
    },
    "fg-consent": {
        "resourceType": "Consent",
        "meta": _meta("fg-consent"),
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
        },
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/saad-1"},
                }
            ],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}],
        },
    },
}

_OTHER_SYSTEM = {"system": "http://example.org/other", "code": "x"}

# profile -> [(defect id, JSON Patch, expected expression)]
DEFECTS: dict[str, list[tuple[str, list[dict[str, Any]], str]]] = {
    "fg-patient": [
        ("no-birthdate", [{"op": "remove", "path": "/birthDate"}], "Patient.birthDate"),
        ("no-family", [{"op": "remove", "path": "/name/0/family"}], "Patient.name[0].family"),
        (
            "bad-nir-key",
            [{"op": "replace", "path": "/identifier/0/value", "value": "178066942012369"}],
            "Patient.identifier[0].value",
        ),
        (
            "two-nir",
            [{"op": "add", "path": "/identifier/-", "value": {"system": NIR, "value": "178066942012368"}}],
            "Patient.identifier",
        ),
        (
            "pin-without-assigner",
            [{"op": "remove", "path": "/identifier/1/assigner"}],
            "Patient.identifier[1]",
        ),
        (
            "identifier-without-value",
            [{"op": "remove", "path": "/identifier/2/value"}],
            "Patient.identifier[2].value",
        ),
    ],
    "fg-organization": [
        ("no-identifier", [{"op": "remove", "path": "/identifier"}], "Organization.identifier"),
        (
            "finess-8-chars",
            [{"op": "replace", "path": "/identifier/0/value", "value": "42000234"}],
            "Organization.identifier[0].value",
        ),
        (
            "siret-letters",
            [{"op": "replace", "path": "/identifier/1/value", "value": "1234567890123A"}],
            "Organization.identifier[1].value",
        ),
    ],
    "fg-careplan-coordination": [
        (
            "unknown-category",
            [{"op": "replace", "path": "/category/0/coding/0", "value": _OTHER_SYSTEM}],
            "CarePlan.category[0]",
        ),
        ("no-category", [{"op": "remove", "path": "/category"}], "CarePlan.category"),
        ("intent-proposal", [{"op": "replace", "path": "/intent", "value": "proposal"}], "CarePlan.intent"),
        ("status-unknown", [{"op": "replace", "path": "/status", "value": "unknown"}], "CarePlan.status"),
        (
            "author-patient",
            [{"op": "replace", "path": "/author/reference", "value": "Patient/p1"}],
            "CarePlan.author",
        ),
        ("no-title", [{"op": "remove", "path": "/title"}], "CarePlan.title"),
        (
            "activity-both",
            [{"op": "add", "path": "/activity/1/detail", "value": {"status": "scheduled"}}],
            "CarePlan.activity[1]",
        ),
        (
            "performer-patient",
            [{"op": "replace", "path": "/activity/0/detail/performer/0/reference", "value": "Patient/p1"}],
            "CarePlan.activity[0].detail.performer[0]",
        ),
    ],
    "fg-careteam-circle-of-care": [
        (
            "no-period-start",
            [{"op": "remove", "path": "/participant/1/period/start"}],
            "CareTeam.participant[1].period.start",
        ),
        ("no-period", [{"op": "remove", "path": "/participant/2/period"}], "CareTeam.participant[2].period"),
        (
            "member-patient",
            [{"op": "replace", "path": "/participant/2/member/reference", "value": "Patient/p1"}],
            "CareTeam.participant[2].member",
        ),
        (
            "unknown-role",
            [{"op": "replace", "path": "/participant/1/role/0/coding/0", "value": _OTHER_SYSTEM}],
            "CareTeam.participant[1].role[0]",
        ),
        (
            "two-coordinators",
            [{"op": "replace", "path": "/participant/1/role/0/coding/0/code", "value": "coordinateur"}],
            "CareTeam",
        ),
        ("no-subject", [{"op": "remove", "path": "/subject"}], "CareTeam.subject"),
    ],
    "fg-task-orientation-follow-up": [
        (
            "wrong-code",
            [{"op": "replace", "path": "/code/coding/0/code", "value": "alerte-vigilance"}],
            "Task.code",
        ),
        ("no-based-on", [{"op": "remove", "path": "/basedOn"}], "Task.basedOn"),
        (
            "based-on-careplan",
            [{"op": "replace", "path": "/basedOn/0/reference", "value": "CarePlan/c1"}],
            "Task.basedOn[0]",
        ),
        (
            "unknown-business-status",
            [{"op": "replace", "path": "/businessStatus/coding/0/code", "value": "PERDU"}],
            "Task.businessStatus",
        ),
        ("refused-without-reason", [{"op": "replace", "path": "/status", "value": "rejected"}], "Task"),
        (
            "owner-patient",
            [{"op": "replace", "path": "/owner/reference", "value": "Patient/p1"}],
            "Task.owner",
        ),
    ],
    "fg-task-home-care-visit": [
        (
            "unknown-service",
            [{"op": "replace", "path": "/code/coding/0/code", "value": "jardinage"}],
            "Task.code",
        ),
        (
            "no-planned-start",
            [{"op": "remove", "path": "/restriction/period/start"}],
            "Task.restriction.period.start",
        ),
        ("rating-6", [{"op": "replace", "path": "/output/0/valueInteger", "value": 6}], "Task.output[0]"),
        ("cancelled-without-reason", [{"op": "replace", "path": "/status", "value": "cancelled"}], "Task"),
        ("no-identifier", [{"op": "remove", "path": "/identifier"}], "Task.identifier"),
        ("no-owner", [{"op": "remove", "path": "/owner"}], "Task.owner"),
        (
            "unknown-input",
            [{"op": "replace", "path": "/input/0/type/coding/0/code", "value": "humeur"}],
            "Task.input[0].type",
        ),
    ],
    "fg-task-vigilance-alert": [
        ("priority-routine", [{"op": "replace", "path": "/priority", "value": "routine"}], "Task.priority"),
        ("no-focus", [{"op": "remove", "path": "/focus"}], "Task.focus"),
        (
            "focus-patient",
            [{"op": "replace", "path": "/focus/reference", "value": "Patient/p1"}],
            "Task.focus",
        ),
        ("no-description", [{"op": "remove", "path": "/description"}], "Task.description"),
        ("intent-plan", [{"op": "replace", "path": "/intent", "value": "plan"}], "Task.intent"),
    ],
    "fg-servicerequest-mdph-right": [
        (
            "unknown-right",
            [{"op": "replace", "path": "/code/coding/0/code", "value": "99.9"}],
            "ServiceRequest.code",
        ),
        ("no-decision-type", [{"op": "remove", "path": "/category/1"}], "ServiceRequest.category"),
        (
            "unknown-decision-type",
            [{"op": "replace", "path": "/category/1/coding/0/code", "value": "8"}],
            "ServiceRequest.category[1]",
        ),
        (
            "occurrence-datetime",
            [
                {"op": "remove", "path": "/occurrencePeriod"},
                {"op": "add", "path": "/occurrenceDateTime", "value": "2025-12-01"},
            ],
            "ServiceRequest.occurrenceDateTime",
        ),
        ("granted-without-start", [{"op": "remove", "path": "/occurrencePeriod/start"}], "ServiceRequest"),
        (
            "requester-patient",
            [{"op": "replace", "path": "/requester/reference", "value": "Patient/p1"}],
            "ServiceRequest.requester",
        ),
        ("no-identifier", [{"op": "remove", "path": "/identifier"}], "ServiceRequest.identifier"),
    ],
    "fg-consent": [
        ("no-actor", [{"op": "remove", "path": "/provision/actor"}], "Consent.provision.actor"),
        ("no-purpose", [{"op": "remove", "path": "/provision/purpose"}], "Consent.provision.purpose"),
        (
            "wrong-scope",
            [{"op": "replace", "path": "/scope/coding/0/code", "value": "research"}],
            "Consent.scope",
        ),
        (
            "wrong-category",
            [{"op": "replace", "path": "/category/0/coding/0/code", "value": "64292-6"}],
            "Consent.category[0]",
        ),
        (
            "unknown-purpose",
            [{"op": "replace", "path": "/provision/purpose/0/code", "value": "MARKETING"}],
            "Consent.provision.purpose[0]",
        ),
        (
            "actor-patient",
            [{"op": "replace", "path": "/provision/actor/0/reference/reference", "value": "Patient/p2"}],
            "Consent.provision.actor[0].reference",
        ),
        (
            "nested-without-actor",
            [
                {
                    "op": "add",
                    "path": "/provision/provision",
                    "value": [
                        {
                            "type": "deny",
                            "purpose": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                    "code": "COC",
                                }
                            ],
                        }
                    ],
                }
            ],
            "Consent",
        ),
    ],
}


def valid(name: str) -> dict[str, Any]:
    """A fresh copy of the valid example of profile ``name``."""
    return copy.deepcopy(VALID[name])


def broken(name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
    """The valid example of ``name`` with one defect applied."""
    result: dict[str, Any] = jsonpatch.apply_patch(valid(name), patch)
    return result


CASES = [(name, defect, patch, path) for name, defects in DEFECTS.items() for defect, patch, path in defects]
