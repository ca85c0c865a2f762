"""A profile's differential compiled into a tree of element rules (FHIR R4 profiling.html,
elementdefinition.html).

Each ``ElementDefinition`` of ``differential.element`` becomes (or refines) one ``Rule``
placed by its ``id``: ``Task.restriction.period.start`` is the child ``start`` of
``period`` of ``restriction``; ``Patient.identifier:insNir.value`` the child ``value`` of
the slice ``insNir`` of ``identifier`` (elementdefinition.html#id). The rule keeps what the
checker enforces: cardinality, ``fixed[x]``, ``pattern[x]``, required bindings, reference
target types, choice types, slicing and invariants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_gateway.validation.invariants import Invariant, compile_invariant
from fhir_gateway.validation.terminology import Expansion, ProfileLoadError

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Discriminator:
    """slicing.discriminator (profiling.html#discriminator): ``value`` or ``pattern`` on a path."""

    type: str
    path: str


@dataclass
class Rule:
    """What the differential says of one element (and of its slices and children)."""

    name: str
    path: str
    min: int | None = None
    max: int | None = None
    max_label: str | None = None
    fixed: Any = None
    pattern: Any = None
    binding: Expansion | None = None
    targets: frozenset[str] | None = None
    choice_types: tuple[str, ...] | None = None
    invariants: list[Invariant] = field(default_factory=list)
    discriminators: tuple[Discriminator, ...] = ()
    closed: bool = False
    slice_name: str | None = None
    slices: dict[str, Rule] = field(default_factory=dict)
    children: dict[str, Rule] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)
    is_choice: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_choice = self.name.endswith("[x]")


def _split_id(element_id: str) -> list[tuple[str, str | None]]:
    parts = []
    for part in element_id.split("."):
        name, _, slice_name = part.partition(":")
        parts.append((name, slice_name or None))
    return parts


def _prefixed(element: dict[str, Any], prefix: str) -> Any:
    for key, value in element.items():
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
            return value
    return None


def _targets(element: dict[str, Any], profile_types: dict[str, str]) -> frozenset[str] | None:
    found: set[str] = set()
    for type_ in element.get("type", []):
        for target in type_.get("targetProfile", []):
            if target.startswith(CORE_PREFIX):
                found.add(target[len(CORE_PREFIX) :])
            elif target in profile_types:
                found.add(profile_types[target])
            else:
                raise ProfileLoadError(f"{element['id']}: unknown targetProfile {target}")
    return frozenset(found) if found else None


def _apply(
    rule: Rule, element: dict[str, Any], value_sets: dict[str, Expansion], profile_types: dict[str, str]
) -> None:
    rule.definition = element
    if "min" in element:
        rule.min = int(element["min"])
    if "max" in element:
        rule.max_label = str(element["max"])
        rule.max = None if element["max"] == "*" else int(element["max"])
    rule.fixed = _prefixed(element, "fixed")
    rule.pattern = _prefixed(element, "pattern")
    binding = element.get("binding")
    if binding and binding.get("strength") == "required":
        url = binding.get("valueSet", "").split("|")[0]
        if url not in value_sets:
            raise ProfileLoadError(f"{element['id']}: required binding to unknown ValueSet {url}")
        rule.binding = value_sets[url]
    rule.targets = _targets(element, profile_types)
    if rule.is_choice and element.get("type"):
        rule.choice_types = tuple(t["code"] for t in element["type"])
    rule.invariants = [compile_invariant(c, element["path"]) for c in element.get("constraint", [])]
    slicing = element.get("slicing")
    if slicing:
        rule.discriminators = tuple(
            Discriminator(d["type"], d["path"]) for d in slicing.get("discriminator", [])
        )
        if any(d.type not in ("value", "pattern") for d in rule.discriminators):
            raise ProfileLoadError(f"{element['id']}: only value and pattern discriminators are supported")
        rule.closed = slicing.get("rules") == "closed"


def compile_differential(
    structure: dict[str, Any], value_sets: dict[str, Expansion], profile_types: dict[str, str]
) -> Rule:
    """The root ``Rule`` of ``structure``'s differential (profiling.html#differential)."""
    res_type = str(structure["type"])
    root = Rule(res_type, res_type)
    for element in structure.get("differential", {}).get("element", []):
        parts = _split_id(str(element["id"]))
        if parts[0][0] != res_type:
            raise ProfileLoadError(f"{structure['url']}: element {element['id']} is not in {res_type}")
        rule = root
        for name, slice_name in parts[1:]:
            child = rule.children.get(name)
            if child is None:
                child = rule.children[name] = Rule(name, f"{rule.path}.{name}")
            rule = child
            if slice_name is not None:
                sliced = rule.slices.get(slice_name)
                if sliced is None:
                    sliced = rule.slices[slice_name] = Rule(name, rule.path, slice_name=slice_name)
                rule = sliced
        _apply(rule, element, value_sets, profile_types)
    return root
