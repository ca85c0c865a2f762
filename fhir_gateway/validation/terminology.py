"""The project's CodeSystems and ValueSets, expanded once (FHIR R4 valueset.html#compose).

Only what ``profiles/`` defines is expanded: a ``compose.include`` either lists its
concepts or names a whole CodeSystem that ``profiles/CodeSystem`` holds (FHIR R4
codesystem.html, ``content`` complete or fragment). Filters and imported value sets are
not used by the project and are refused when loading, so that a binding never silently
accepts everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Code = tuple[str, str]


class ProfileLoadError(ValueError):
    """A conformance resource of ``profiles/`` that the validator cannot use."""


@dataclass(frozen=True)
class Expansion:
    """The (system, code) pairs of one ValueSet; ``codes`` for ``code`` elements without system."""

    url: str
    pairs: frozenset[Code]
    codes: frozenset[str]

    def has_coding(self, system: str | None, code: str | None) -> bool:
        return system is not None and code is not None and (system, code) in self.pairs


def _concepts(concepts: Iterable[dict[str, Any]]) -> Iterable[str]:
    """Codes of a CodeSystem, nested concepts included (codesystem.html#hierarchy)."""
    for concept in concepts:
        yield str(concept["code"])
        yield from _concepts(concept.get("concept", []))


def code_systems(resources: Iterable[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """url -> codes of every CodeSystem."""
    return {cs["url"]: frozenset(_concepts(cs.get("concept", []))) for cs in resources}


def expand(value_set: dict[str, Any], systems: dict[str, frozenset[str]]) -> Expansion:
    """Expand ``value_set`` against the local ``systems`` (valueset.html#expansion)."""
    url = str(value_set["url"])
    compose = value_set.get("compose") or {}
    if compose.get("exclude"):
        raise ProfileLoadError(f"ValueSet {url}: compose.exclude is not supported")
    pairs: set[Code] = set()
    for include in compose.get("include", []):
        if include.get("filter") or include.get("valueSet"):
            raise ProfileLoadError(f"ValueSet {url}: include.filter / include.valueSet are not supported")
        system = include.get("system")
        if not system:
            raise ProfileLoadError(f"ValueSet {url}: an include without a system")
        if include.get("concept"):
            pairs.update((system, str(c["code"])) for c in include["concept"])
        elif system in systems:
            pairs.update((system, code) for code in systems[system])
        else:
            raise ProfileLoadError(
                f"ValueSet {url}: includes all of {system}, which profiles/CodeSystem does not define"
            )
    return Expansion(url, frozenset(pairs), frozenset(code for _, code in pairs))
