"""The registry and the checker on their own: loading, refusals of unusable profiles, the
NIR key (2A/2B), pattern matching and compiled-once profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.validation.registry import load_registry, registry
from fhir_gateway.validation.slicing import matches_pattern
from fhir_gateway.validation.terminology import ProfileLoadError

PATIENT = "https://fhir-gateway.org/fhir/StructureDefinition/fg-patient"


def _nir_with_key(first13: str) -> str:
    number = int(first13.replace("2A", "19").replace("2B", "18"))
    return f"{first13}{97 - number % 97:02d}"


def _patient(nir: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir}],
        "name": [{"family": "X"}],
        "birthDate": "1950-01-01",
    }


@pytest.mark.parametrize(
    "first13", ["1780669420123", "2850399123456", "15012" + "2A" + "004123", "26002" + "2B" + "123456"]
)
def test_nir_keys_are_checked_corsica_included(first13: str) -> None:
    profile = registry().get(PATIENT)
    assert profile is not None
    good = _nir_with_key(first13)
    assert profile.check(_patient(good)) == []
    wrong = good[:13] + f"{(int(good[13:]) % 97) + 1:02d}"
    assert [i.expression for i in profile.check(_patient(wrong))] == [["Patient.identifier[0].value"]]


@pytest.mark.parametrize("nir", ["17806694201236", "1780669420123680", "978066942012368", "1780669A2012368"])
def test_malformed_nir_is_refused(nir: str) -> None:
    profile = registry().get(PATIENT)
    assert profile is not None
    assert profile.check(_patient(nir))


def test_registry_is_built_once_and_compiles_every_profile() -> None:
    assert registry() is registry()
    assert len(registry().profiles) == 9
    assert registry().get(PATIENT + "|0.1.0") is registry().get(PATIENT)


def test_pattern_matching() -> None:
    pattern = {"coding": [{"system": "s", "code": "c"}]}
    assert matches_pattern(
        pattern, {"coding": [{"system": "o", "code": "x"}, {"system": "s", "code": "c", "display": "d"}]}
    )
    assert not matches_pattern(pattern, {"coding": [{"system": "s", "code": "d"}]})
    assert not matches_pattern(pattern, None)


def _write(folder: Path, kind: str, resource: dict[str, Any]) -> None:
    (folder / kind).mkdir(parents=True, exist_ok=True)
    (folder / kind / f"{resource['id']}.json").write_text(json.dumps(resource))


def _profile(element: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": "p",
        "url": "https://example.org/p",
        "name": "P",
        "type": "Patient",
        "kind": "resource",
        "derivation": "constraint",
        "differential": {"element": [element]},
    }


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (
            {
                "id": "Patient.gender",
                "path": "Patient.gender",
                "binding": {"strength": "required", "valueSet": "https://example.org/nope"},
            },
            "unknown ValueSet",
        ),
        (
            {
                "id": "Patient.name",
                "path": "Patient.name",
                "constraint": [{"key": "x-1", "severity": "error", "human": "h", "expression": "name.("}],
            },
            "x-1",
        ),
        (
            {
                "id": "Patient.link.other",
                "path": "Patient.link.other",
                "type": [{"code": "Reference", "targetProfile": ["https://example.org/unknown"]}],
            },
            "unknown targetProfile",
        ),
        ({"id": "Task.status", "path": "Task.status", "min": 1}, "is not in Patient"),
    ],
)
def test_unusable_profiles_stop_the_load(tmp_path: Path, element: dict[str, Any], message: str) -> None:
    _write(tmp_path, "StructureDefinition", _profile(element))
    with pytest.raises(ProfileLoadError, match=message):
        load_registry(tmp_path)


def test_value_set_of_an_unknown_code_system_is_refused(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "ValueSet",
        {
            "resourceType": "ValueSet",
            "id": "v",
            "url": "https://example.org/v",
            "compose": {"include": [{"system": "https://example.org/unknown"}]},
        },
    )
    with pytest.raises(ProfileLoadError, match="does not define"):
        load_registry(tmp_path)
