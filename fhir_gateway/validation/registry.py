"""The project's conformance resources, loaded once from ``profiles/`` (FHIR R4
profiling.html, structuredefinition.html).

``profiles/StructureDefinition/*.json`` (constraints on a core type, with a differential),
``profiles/ValueSet``, ``profiles/CodeSystem`` and ``profiles/ConceptMap``. Every profile
is compiled into its rule tree when the registry is built; a profile that cannot be
enforced (unknown ValueSet, unparsable FHIRPath...) stops the load with its reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhir_gateway.kit.errors import Issue
from fhir_gateway.validation.checker import check_resource
from fhir_gateway.validation.elements import Rule, compile_differential
from fhir_gateway.validation.terminology import Expansion, ProfileLoadError, code_systems, expand

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


@dataclass(frozen=True)
class Profile:
    """One StructureDefinition and its compiled rules."""

    url: str
    name: str
    type: str
    definition: dict[str, Any]
    root: Rule

    def check(self, resource: dict[str, Any]) -> list[Issue]:
        """Issues of ``resource`` against this profile (empty when it conforms)."""
        return check_resource(self.root, resource)


@dataclass(frozen=True)
class Registry:
    """Profiles by canonical URL, with the ValueSets, CodeSystems and ConceptMaps they use."""

    profiles: dict[str, Profile]
    value_sets: dict[str, Expansion]
    resources: dict[str, dict[str, dict[str, Any]]]

    def get(self, url: str) -> Profile | None:
        """The profile of ``url`` (a ``|version`` suffix is ignored)."""
        return self.profiles.get(url.split("|")[0])


def _read(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    out = []
    for file in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(file.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ProfileLoadError(f"{file}: not JSON ({exc})") from None
    return out


def load_registry(folder: Path) -> Registry:
    """Read and compile every conformance resource of ``folder``."""
    kinds = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap")
    resources = {kind: {r["url"]: r for r in _read(folder / kind)} for kind in kinds}
    systems = code_systems(resources["CodeSystem"].values())
    value_sets = {url: expand(vs, systems) for url, vs in resources["ValueSet"].items()}
    structures = resources["StructureDefinition"]
    profile_types = {url: str(sd["type"]) for url, sd in structures.items()}
    profiles = {}
    for url, sd in structures.items():
        if sd.get("derivation") != "constraint" or sd.get("kind") != "resource":
            continue
        root = compile_differential(sd, value_sets, profile_types)
        profiles[url] = Profile(url, str(sd["name"]), str(sd["type"]), sd, root)
    return Registry(profiles, value_sets, resources)


_folder: Path | None = None


def use_folder(folder: str) -> None:
    """Read the profiles from ``folder`` (the app's ``profiles_dir`` setting; empty: the default)."""
    global _folder
    _folder = Path(folder) if folder else None


@cache
def default_folder() -> Path:
    """``FHIR_GATEWAY_PROFILES_DIR``, else the project's ``profiles/`` (beside the package in a
    checkout, or in the working directory of an installed image)."""
    from fhir_gateway.settings import get_settings

    configured = get_settings().profiles_dir
    if configured:
        return Path(configured)
    return PROFILES_DIR if PROFILES_DIR.is_dir() else Path.cwd() / "profiles"


def registry() -> Registry:
    """The registry of the deployment's profiles folder, built once per process and folder."""
    return _registry(_folder or default_folder())


@cache
def _registry(folder: Path) -> Registry:
    return load_registry(folder)
