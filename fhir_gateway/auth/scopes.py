"""SMART on FHIR scopes (SMART App Launch v2, scopes-and-launch-context.html).

v2: ``<system|user|patient>/<Type|*>.<c?r?u?d?s?>`` (letters in that order);
v1 forms ``.read`` (= rs), ``.write`` (= cud) and ``.*`` (= cruds) are accepted.
Other scopes (openid, launch, fhirUser...) grant no FHIR data and are ignored here.
"""

from __future__ import annotations

import re

from fhir_gateway.auth.context import ScopeGrant

_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)(\?.*)?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def parse_scope(token: str) -> ScopeGrant | None:
    """One scope string -> ScopeGrant, or None when it is not a FHIR resource scope."""
    match = _SCOPE.match(token)
    if not match or not match.group(3):
        return None
    context, res_type, perms = match.group(1), match.group(2), match.group(3)
    letters = _V1.get(perms, perms)
    return ScopeGrant(context, res_type, frozenset(letters))


def parse_scopes(scope: str) -> tuple[ScopeGrant, ...]:
    """A space-separated scope string -> the grants it contains."""
    grants = (parse_scope(part) for part in scope.split())
    return tuple(g for g in grants if g is not None)


def _covered(grant: ScopeGrant, allowed: tuple[ScopeGrant, ...]) -> bool:
    return all(
        any(
            a.context == grant.context
            and a.resource_type in ("*", grant.resource_type)
            and i in a.interactions
            for a in allowed
        )
        for i in grant.interactions
    )


def narrow(requested: str | None, registered: str) -> str:
    """The scopes granted: those requested that the registration covers (all when none asked)."""
    if not requested:
        return registered
    allowed = parse_scopes(registered)
    granted = []
    for part in requested.split():
        grant = parse_scope(part)
        if grant is not None and _covered(grant, allowed):
            granted.append(part)
    return " ".join(granted)
