"""The format declarations' FHIRPath (FHIR R4 fhirpath.html) gives the same answers through
``mapping.fhirpath`` (the fast subset first) as through fhirpathpy alone, on every resource
the golden cases store: lookup bindings, export ``resolve``/``require`` and export fields."""

from __future__ import annotations

import json
from typing import Any

import fhirpathpy
import pytest

from fhir_gateway.mapping.fhirpath import compiled_path, first_value
from fhir_gateway.mapping.importer import organization_constants
from fhir_gateway.mapping.spec import available, load_format, mappings_root
from fhir_gateway.mapping.template import render
from fhir_gateway.validation.fastpath import compile_fast
from tests.mappings.golden import cases


def _expressions() -> set[str]:
    """Every FHIRPath expression of every format, its placeholders filled as the engine does."""
    root = mappings_root()
    found: set[str] = set()
    for name in available(root):
        fmt = load_format(root, name)
        constants = organization_constants("Organization/saad-42")
        constants.update({k: render(v, constants) for k, v in fmt.constants.items()})
        for step in fmt.model.get("resources", []):
            found.update((step.get("bind") or {}).values())
        spec = fmt.model.get("export") or {}
        found.update((spec.get("resolve") or {}).values())
        if spec.get("require"):
            found.add(render(spec["require"], constants))
        for entry in (spec.get("fields") or {}).values():
            found.add(render(entry["path"] if isinstance(entry, dict) else entry, constants))
    return found


# circles of care as the visits' coordinator binding meets them (the golden cases store none)
TEAMS: list[dict[str, Any]] = [
    {"resourceType": "CareTeam", "id": "t1", "participant": [
        {"role": [{"coding": [{"system": "urn:x", "code": "aidant"}]}],
         "member": {"reference": "RelatedPerson/1"}},
        {"role": [{"coding": [{"code": "x"}, {"code": "coordinateur"}]}],
         "member": {"reference": "Practitioner/2"}},
    ]},
    {"resourceType": "CareTeam", "id": "t2", "participant": [
        {"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "768821004"}]}],
         "member": {"reference": "PractitionerRole/3"}},
        {"role": [{"coding": [{"code": "coordinateur"}]}], "member": {"display": "no reference"}},
    ]},
    {"resourceType": "CareTeam", "id": "t3", "participant": [{"member": {"reference": "Organization/4"}}]},
    {"resourceType": "CareTeam", "id": "t4"},
]  # fmt: skip


def _resources() -> list[dict[str, Any]]:
    out = list(TEAMS)
    for case in cases():
        expected = json.loads(case.with_suffix(".json").read_text())["expected"]
        for resources in (expected.get("resources") or {}).values():
            out.extend(resources)
    return out


EXPRESSIONS = sorted(_expressions())
RESOURCES = _resources()


def test_the_declarations_and_the_cases_are_read() -> None:
    assert len(EXPRESSIONS) >= 30
    assert len(RESOURCES) >= 50
    # most of them run in the fast subset; those it does not cover are left to fhirpathpy
    fast = [e for e in EXPRESSIONS if compile_fast(e) is not None]
    assert len(fast) >= len(EXPRESSIONS) // 2
    assert any("participant.where(" in e for e in fast)  # the visits' coordinator binding


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_same_answers_as_fhirpathpy(expression: str) -> None:
    reference = fhirpathpy.compile(expression)
    for resource in RESOURCES:
        assert compiled_path(expression)(resource) == reference(resource, None), (expression, resource)


def test_first_value() -> None:
    team = {
        "resourceType": "CareTeam",
        "participant": [
            {"role": [{"coding": [{"code": "aidant"}]}], "member": {"reference": "RelatedPerson/1"}},
            {"role": [{"coding": [{"code": "coordinateur"}]}], "member": {"reference": "Practitioner/2"}},
        ],
    }
    coordinator = "participant.where(role.coding.where(code='coordinateur').exists()).member.reference"
    assert first_value(team, coordinator) == "Practitioner/2"
    assert first_value(team, "participant.where(role.coding.code = 'x').member.reference") is None
    # outside the fast subset (iif): fhirpathpy answers
    assert first_value(team, "iif(participant.exists(), 'yes', 'no')") == "yes"
