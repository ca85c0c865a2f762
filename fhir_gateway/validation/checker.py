"""Check one resource against a compiled profile (FHIR R4 profiling.html, validation.html
"Profiles").

The walk follows the profile's rules, not the resource: for every instance of a
constrained element it checks cardinality (``min``/``max``), ``fixed[x]`` (exact) and
``pattern[x]`` (the instance holds at least the pattern, elementdefinition.html#pattern),
required bindings, reference target types, allowed choice types and invariants, then
assigns the items of a sliced element to its slices (profiling.html#slicing) and applies
each slice's own rules. Each problem is an ``Issue`` whose ``expression`` is the FHIRPath
of the element, with indexes (``Patient.identifier[0].value``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhir_gateway.kit.errors import Issue
from fhir_gateway.validation.elements import Rule
from fhir_gateway.validation.slicing import matches_pattern, slice_of

_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _items(raw: Any) -> tuple[list[Any], bool]:
    if raw is None:
        return [], False
    if isinstance(raw, list):
        return raw, True
    return [raw], False


def _lookup(rule: Rule, instance: dict[str, Any]) -> tuple[str, Any]:
    """The JSON key and value of ``rule``'s element in ``instance`` (choice types: ``value[x]``)."""
    if not rule.is_choice:
        return rule.name, instance.get(rule.name)
    stem = rule.name[:-3]
    for key, value in instance.items():
        if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
            return key, value
    return stem, None


def _reference_type(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if isinstance(reference, str):
        if reference.startswith(("#", "urn:")):
            return None
        found = _REFERENCE.search(reference)
        return found.group(1) if found else None
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def _check_binding(rule: Rule, value: Any, path: str, issues: list[Issue]) -> None:
    binding = rule.binding
    assert binding is not None
    if isinstance(value, str):
        ok = value in binding.codes
    elif isinstance(value, dict) and "coding" in value:
        ok = any(binding.has_coding(c.get("system"), c.get("code")) for c in value["coding"] or [])
    elif isinstance(value, dict):
        ok = binding.has_coding(value.get("system"), value.get("code"))
    else:
        ok = False
    if not ok:
        found = _shown_codes(value)
        issues.append(
            Issue("error", "code-invalid", f"{path}: {found} is not in the value set {binding.url}", [path])
        )


def _shown_codes(value: Any) -> str:
    """The code(s) of a code, Coding or CodeableConcept, for a diagnostic."""
    if isinstance(value, str):
        return f"'{value}'"
    codings = value.get("coding") if isinstance(value, dict) and "coding" in value else [value]
    shown = [
        f"{c.get('system', '(no system)')}|{c.get('code', '')}" for c in codings or [] if isinstance(c, dict)
    ]
    return " / ".join(shown) or "no code"


def _check_value(rule: Rule, value: Any, path: str, issues: list[Issue]) -> None:
    if rule.fixed is not None and value != rule.fixed:
        issues.append(Issue("error", "value", f"{path}: must be exactly {json.dumps(rule.fixed)}", [path]))
    if rule.pattern is not None and not matches_pattern(rule.pattern, value):
        issues.append(Issue("error", "value", f"{path}: must contain {json.dumps(rule.pattern)}", [path]))
    if rule.binding is not None:
        _check_binding(rule, value, path, issues)
    if rule.targets is not None:
        target = _reference_type(value)
        if target is not None and target not in rule.targets:
            allowed = ", ".join(sorted(rule.targets))
            issues.append(
                Issue("error", "structure", f"{path}: must refer to {allowed}, not {target}", [path])
            )
    for invariant in rule.invariants:
        if not invariant.holds(value):
            severity = "warning" if invariant.severity == "warning" else "error"
            issues.append(Issue(severity, "invariant", f"{path}: {invariant.key}: {invariant.human}", [path]))
    if isinstance(value, dict) and rule.children:
        check_children(rule, value, path, issues)


def _check_count(rule: Rule, count: int, path: str, issues: list[Issue], what: str = "") -> None:
    label = f"{path}: {what} " if what else f"{path}: "
    if rule.min is not None and count < rule.min:
        text = "is required" if rule.min == 1 and not what else f"needs at least {rule.min} (found {count})"
        issues.append(Issue("error", "required", label + text, [path]))
    if rule.max is not None and count > rule.max:
        issues.append(
            Issue("error", "structure", f"{label}allows at most {rule.max_label} (found {count})", [path])
        )


def _check_element(rule: Rule, key: str, raw: Any, parent_path: str, issues: list[Issue]) -> None:
    path = f"{parent_path}.{key}"
    if rule.is_choice and raw is not None and rule.choice_types is not None:
        suffix = key[len(rule.name) - 3 :]
        if not any(suffix.lower() == t.lower() for t in rule.choice_types):
            allowed = ", ".join(rule.choice_types)
            issues.append(Issue("error", "structure", f"{path}: the type must be one of {allowed}", [path]))
    items, indexed = _items(raw)
    if rule.min is not None or rule.max is not None:
        _check_count(rule, len(items), path, issues)
    if not items and not rule.slices:
        return
    in_slice: dict[str, list[tuple[int, Any]]] = {name: [] for name in rule.slices}
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]" if indexed else path
        _check_value(rule, item, item_path, issues)
        if rule.discriminators:
            name = slice_of(rule, item)
            if name is not None:
                in_slice[name].append((i, item))
            elif rule.closed:
                issues.append(
                    Issue("error", "structure", f"{item_path}: matches no slice (closed)", [item_path])
                )
    for name, members in in_slice.items():
        sliced = rule.slices[name]
        _check_count(sliced, len(members), path, issues, f"slice '{name}'")
        for i, item in members:
            _check_value(sliced, item, f"{path}[{i}]" if indexed else path, issues)


def check_children(rule: Rule, instance: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """Check every constrained child element of one instance of ``rule``'s element."""
    for child in rule.children.values():
        key, raw = _lookup(child, instance)
        _check_element(child, key, raw, path, issues)


def check_resource(root: Rule, resource: dict[str, Any]) -> list[Issue]:
    """All issues of ``resource`` against the profile whose root rule is ``root``."""
    issues: list[Issue] = []
    _check_value(root, resource, root.path, issues)
    return issues
