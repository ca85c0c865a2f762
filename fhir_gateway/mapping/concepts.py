"""Code translation with FHIR ConceptMaps (FHIR R4 conceptmap.html).

A format's local codes (``Réalisée``, ``done``) translate to the model's canonical codes
(``completed``) through ``group.element.code -> target.code`` with equivalence
``equivalent``/``equal`` (the first target for imports); exports read the same map
backwards (every target back to its source, so several FHIR codes may give one local code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_USABLE = ("equivalent", "equal", "wider", "narrower")


@dataclass
class ValueMap:
    """One ConceptMap as two dictionaries: local -> canonical and canonical -> local."""

    name: str
    forward: dict[str, str] = field(default_factory=dict)
    backward: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_conceptmap(cls, name: str, resource: dict[str, Any]) -> ValueMap:
        """Read the ``group[].element[]`` of a ConceptMap resource."""
        if resource.get("resourceType") != "ConceptMap":
            raise ValueError(f"{name}: not a ConceptMap")
        vmap = cls(name)
        for group in resource.get("group") or []:
            for element in group.get("element") or []:
                source = str(element["code"])
                for target in element.get("target") or []:
                    if target.get("equivalence", "equivalent") in _USABLE:
                        vmap.forward.setdefault(source, str(target["code"]))
                        vmap.backward.setdefault(str(target["code"]), source)
        return vmap

    @classmethod
    def from_values(cls, name: str, values: list[str]) -> ValueMap:
        """A closed list of accepted codes, kept as they are."""
        return cls(name, {v: v for v in values}, {v: v for v in values})

    def accepted(self) -> str:
        return ", ".join(self.forward)

    def translate(self, local: str) -> str | None:
        return self.forward.get(local)

    def reverse(self, canonical: str) -> str | None:
        return self.backward.get(canonical)
