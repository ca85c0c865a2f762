"""Compile a FHIR R4 Consent into flat access grants (FHIR R4 consent.html#6.2.3).

Only ``status = active`` Consents with scope ``patient-privacy`` (consent.html#scope)
produce grants. Each provision (``Consent.provision`` and its nested
``provision.provision``) becomes one row per (actor, class, purpose, action):

- type: a nested provision without ``type`` is an exception to its parent (the opposite
  type); the root without ``type`` follows ``policyRule`` (OPTIN permit, otherwise deny:
  the safe side; v3 ActCode OPTIN/OPTOUT).
- a nested provision inherits every list it does not restate (actors, classes, purposes,
  actions, data) and lives within its parent's period (consent.html#6.2.4: "nested
  provisions ... are exceptions to the base policy").
- actor: Organization, Practitioner, PractitionerRole, CareTeam, RelatedPerson references
  (role is not used); none means every actor (``*``).
- class: codes of ``http://hl7.org/fhir/resource-types``; data: specific resources.
- action (consentaction): access/use/disclose = read, correct/collect = write.
- purpose: v3 PurposeOfUse codes, matched exactly.

Conditions the gateway cannot enforce in SQL (securityLabel, code, dataPeriod, classes of
other systems, unknown actions) never widen access: such a permit grants nothing (it
may still carve an exception out of its parent deny), such a deny is widened to ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fhir_gateway.consent.periods import intersect, period_bounds, reference_parts
from fhir_gateway.kit.errors import Unprocessable

ACTOR_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "CareTeam", "RelatedPerson"})
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"
READ_ACTIONS = frozenset({"access", "use", "disclose"})
WRITE_ACTIONS = frozenset({"correct", "collect"})
MAX_ROWS = 10_000

Period = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class Scope:
    """What a provision applies to, after inheritance from its parents."""

    actors: tuple[str, ...] = ("*",)
    classes: tuple[str, ...] = ("*",)
    data: tuple[tuple[str, str], ...] = ()  # (type, id) of specific resources
    purposes: tuple[str, ...] = ("*",)
    actions: tuple[str, ...] = ("*",)
    period: Period = (None, None)
    enforceable: bool = True  # False when a condition could not be represented


def is_patient_privacy(consent: dict[str, Any]) -> bool:
    """True for Consent.scope ``patient-privacy`` (consent.html#scope)."""
    scope = consent.get("scope")
    codings = scope.get("coding", []) if isinstance(scope, dict) else []
    return any(isinstance(c, dict) and c.get("code") == "patient-privacy" for c in codings)


def consent_patient(consent: dict[str, Any]) -> str | None:
    """The id of Consent.patient, when it is a Patient reference."""
    parts = reference_parts(consent.get("patient"))
    return parts[1] if parts and parts[0] == "Patient" else None


def compile_consent(consent_id: str, consent: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``consent_grant`` rows of ``consent`` (none unless active patient-privacy)."""
    patient_id = consent_patient(consent)
    if (
        consent.get("status") != "active"
        or not is_patient_privacy(consent)
        or patient_id is None
        or not isinstance(consent.get("provision"), dict)
    ):
        return []
    rule = consent.get("policyRule")
    codes = [c.get("code") for c in (rule or {}).get("coding", []) if isinstance(c, dict)]
    root_type = "permit" if "OPTIN" in codes else "deny"
    rows: list[dict[str, Any]] = []
    base = {"consent_id": consent_id, "patient_id": patient_id}
    _walk(consent["provision"], root_type, Scope(), "0", base, rows)
    if len(rows) > MAX_ROWS:
        raise Unprocessable(
            f"Consent/{consent_id} expands to {len(rows)} access rules (at most {MAX_ROWS}); split it",
            expression=["Consent.provision"],
        )
    return rows


def _walk(
    provision: dict[str, Any],
    default_type: str,
    parent: Scope,
    path: str,
    base: dict[str, Any],
    rows: list[dict[str, Any]],
) -> None:
    kind = provision.get("type") if provision.get("type") in ("permit", "deny") else default_type
    scope = _narrow(parent, provision, deny=kind == "deny")
    children = [p for p in provision.get("provision", []) if isinstance(p, dict)]
    opposite = "permit" if kind == "deny" else "deny"
    if kind == "permit":
        effect = "permit" if scope.enforceable else "except"
    else:
        effect = "deny"
    overridable = kind == "deny" and _has_nested_permit(children, opposite)
    for actor in scope.actors:
        for res_class, data_id in _targets(scope):
            for purpose in scope.purposes:
                for action in scope.actions:
                    rows.append(
                        {
                            **base,
                            "path": path,
                            "effect": effect,
                            "actor": actor,
                            "res_class": res_class,
                            "data_id": data_id,
                            "purpose": purpose,
                            "action": action,
                            "period_start": scope.period[0],
                            "period_end": scope.period[1],
                            "overridable": overridable,
                        }
                    )
    for index, child in enumerate(children[:50]):
        _walk(child, opposite, scope, f"{path}.{index}", base, rows)


def _has_nested_permit(children: list[dict[str, Any]], default_type: str) -> bool:
    for child in children:
        kind = child.get("type") if child.get("type") in ("permit", "deny") else default_type
        if kind == "permit":
            return True
        grand = [p for p in child.get("provision", []) if isinstance(p, dict)]
        if _has_nested_permit(grand, "permit" if kind == "deny" else "deny"):
            return True
    return False


def _targets(scope: Scope) -> list[tuple[str, str]]:
    if scope.data:
        return list(scope.data)
    return [(c, "*") for c in scope.classes]


def _narrow(parent: Scope, provision: dict[str, Any], *, deny: bool) -> Scope:
    """The parent's scope restated or narrowed by ``provision``'s own elements."""
    scope = replace(parent, period=intersect(parent.period, period_bounds(provision.get("period"))))
    enforceable = parent.enforceable and not any(
        provision.get(k) for k in ("securityLabel", "code", "dataPeriod")
    )
    actors = [reference_parts(a.get("reference")) for a in _dicts(provision.get("actor"))]
    if actors:
        known = tuple(sorted({f"{t}/{i}" for t, i in (a for a in actors if a) if t in ACTOR_TYPES}))
        # actors of other kinds (Patient, Device, Group, contained) never match a partner
        scope = replace(scope, actors=known)
        if not known:
            enforceable = False
    classes = _dicts(provision.get("class"))
    if classes:
        types = tuple(
            sorted(
                {
                    c["code"]
                    for c in classes
                    if c.get("system") == RESOURCE_TYPES_SYSTEM and isinstance(c.get("code"), str)
                }
            )
        )
        if len(types) < len(classes):
            enforceable = False
        scope = replace(scope, classes=("*",) if deny and not enforceable else types or ("*",))
    data = [reference_parts(d.get("reference")) for d in _dicts(provision.get("data"))]
    if data:
        scope = replace(scope, data=tuple(sorted({d for d in data if d})))
        if not all(data):
            enforceable = False  # contained or malformed references cannot be matched
        if deny and any(d.get("meaning") not in (None, "instance") for d in _dicts(provision.get("data"))):
            scope = replace(scope, data=(), classes=tuple(sorted({t for t, _ in scope.data})) or ("*",))
    purposes = [p["code"] for p in _dicts(provision.get("purpose")) if isinstance(p.get("code"), str)]
    if purposes:
        scope = replace(scope, purposes=tuple(sorted(set(purposes))))
    actions = _actions(provision)
    if actions is not None:
        scope = replace(scope, actions=actions or ("*",))
        if not actions:
            enforceable = False
    if deny and not enforceable:
        # widen: a deny we cannot state exactly applies to every class and action
        scope = replace(scope, classes=("*",), data=(), actions=("*",))
    return replace(scope, enforceable=enforceable)


def _actions(provision: dict[str, Any]) -> tuple[str, ...] | None:
    """read/write from Consent.provision.action codes; None if absent, () if none known."""
    concepts = _dicts(provision.get("action"))
    if not concepts:
        return None
    codes = {c.get("code") for a in concepts for c in _dicts(a.get("coding"))}
    found = set()
    if codes & READ_ACTIONS:
        found.add("read")
    if codes & WRITE_ACTIONS:
        found.add("write")
    return tuple(sorted(found))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
