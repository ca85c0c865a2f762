"""Partner writes of shared resources, those that belong to no person (issue 4, deny by default).

Consent decides the writes of a person's data (``visibility.check_write``); the resources of
no person (the directory of organisations and professionals, Groups) are decided here, on
who *owns* them. A partner owns its Organization (the one its client is registered with) and
every Organization whose ``partOf`` chain leads to it (FHIR R4 organization.html, ``partOf``):
its "own organisations". Then, for a non-trusted caller:

- **Organization**: only one of its own organisations;
- **PractitionerRole**: only with ``organization`` one of its own organisations;
- **Group**: only with ``managingEntity`` one of the caller's actors (its Organization,
  Practitioner or PractitionerRole), the very rule that lets it read a Group
  (``visibility._managed_group``);
- **Practitioner**: anyone may create one (a partner records a professional it works with);
  only the caller acting as that Practitioner, or a partner with a PractitionerRole of one of
  its own organisations naming it, may change or delete it;
- **Subscription**: its creating client (``subscriptions.hooks.prepare``);
- any other type of no person: refused (trusted clients only). Patient-context tokens write
  their own person's data only, never a shared resource.

An update is checked on the stored version and on the new one (nothing moves out of, or into,
another's ownership); a delete on the stored version. A write whose content is the stored
content stores nothing and is answered with the stored version, as a read: it needs what a
read needs (every partner reads Organizations, Practitioners and PractitionerRoles; a Group
only its manager). The walk of ``partOf`` reads the stored versions (search index), the
resource being written counted as it will be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.consent.periods import reference_parts
from fhir_gateway.consent.visibility import caller_actors
from fhir_gateway.kit.errors import Forbidden
from fhir_gateway.search.indexing import PERSON_TYPES
from fhir_gateway.storage import ownership_repository

Resource = dict[str, Any]

# Types of no person whose writes another rule decides (subscriptions.hooks: the creating client).
OWN_RULE_TYPES = frozenset({"Subscription"})
# Shared types every partner may read (visibility: rows of no person), hence answer as a read.
READ_BY_ALL = frozenset({"Organization", "Practitioner", "PractitionerRole"})
_MAX_DEPTH = 32  # longest partOf chain followed


def applies(access: AccessContext, res_type: str) -> bool:
    """True when a write of ``res_type`` by ``access`` is decided here."""
    return not access.trusted and res_type not in PERSON_TYPES and res_type not in OWN_RULE_TYPES


class _Owner:
    """The caller's ownership, with the Organizations found so far."""

    def __init__(self, conn: Connection, access: AccessContext) -> None:
        self.conn = conn
        self.actors = caller_actors(access)
        own = next((a for a in self.actors if a.startswith("Organization/")), None)
        self.organization = own.split("/", 1)[1] if own else None
        self._owned: dict[str, bool] = {}

    def owns_organization(self, org_id: str, *, skip: frozenset[str] = frozenset()) -> bool:
        """``org_id`` is the caller's Organization or its ``partOf`` chain leads there (ids in
        ``skip``, the resource being written, count as not leading there)."""
        if self.organization is None:
            return False
        cached = self._owned.get(org_id) if not skip else None
        if cached is not None:
            return cached
        seen = set(skip)
        current: str | None = org_id
        owned = False
        while current is not None and current not in seen and len(seen) <= _MAX_DEPTH:
            if current == self.organization:
                owned = True
                break
            seen.add(current)
            current = ownership_repository.parent_organization(self.conn, current)
        if not skip:
            self._owned[org_id] = owned
        return owned

    def owns_organization_version(self, res_id: str, version: Resource) -> bool:
        """The Organization ``res_id`` as in ``version`` is one of the caller's own."""
        if res_id == self.organization:
            return True
        parent = _reference_id(version.get("partOf"), "Organization")
        return parent is not None and self.owns_organization(parent, skip=frozenset({res_id}))

    def refers_to_actor(self, reference: Any) -> bool:
        parts = reference_parts(reference)
        return parts is not None and f"{parts[0]}/{parts[1]}" in self.actors


def _name(res_type: str, res_id: str) -> str:
    return f"{res_type}/{res_id}" if res_id else f"The new {res_type}"


def _reference_id(reference: Any, res_type: str) -> str | None:
    parts = reference_parts(reference)
    return parts[1] if parts is not None and parts[0] == res_type else None


def _organization(owner: _Owner, res_id: str, old: Resource | None, new: Resource | None) -> str | None:
    for version, which in ((old, "is"), (new, "would be")):
        if version is not None and not owner.owns_organization_version(res_id, version):
            return (
                f"{_name('Organization', res_id)} {which} neither this client's Organization nor "
                "part of it (partOf): only its organisation or a trusted client may write it"
            )
    return None


def _practitioner_role(owner: _Owner, res_id: str, old: Resource | None, new: Resource | None) -> str | None:
    for version, which in ((old, "is"), (new, "would be")):
        if version is None:
            continue
        org = _reference_id(version.get("organization"), "Organization")
        if org is None or not owner.owns_organization(org):
            return (
                f"{_name('PractitionerRole', res_id)} {which} a role of another organisation: a "
                "partner writes the roles whose organization is its own (or part of it)"
            )
    return None


def _group(owner: _Owner, res_id: str, old: Resource | None, new: Resource | None) -> str | None:
    for version, which in ((old, "is"), (new, "would be")):
        if version is not None and not owner.refers_to_actor(version.get("managingEntity")):
            return (
                f"{_name('Group', res_id)} {which} managed by another organisation: a partner "
                "writes the Groups whose managingEntity is itself"
            )
    return None


def _practitioner(owner: _Owner, res_id: str, old: Resource | None, new: Resource | None) -> str | None:
    if old is None or f"Practitioner/{res_id}" in owner.actors:
        return None  # a create; or the caller acting as this practitioner
    roles = ownership_repository.role_organizations(owner.conn, res_id)
    if any(owner.owns_organization(org) for org in roles):
        return None
    return (
        f"Practitioner/{res_id} has no PractitionerRole of this client's organisation: only the "
        "organisations it works for (or a trusted client) may change it"
    )


_RULES: dict[str, Callable[[_Owner, str, Resource | None, Resource | None], str | None]] = {
    "Organization": _organization,
    "PractitionerRole": _practitioner_role,
    "Group": _group,
    "Practitioner": _practitioner,
}
SHARED_TYPES = frozenset(_RULES)


def check_write(
    conn: Connection,
    access: AccessContext,
    res_type: str,
    res_id: str,
    new: Resource | None,
    old: Resource | None,
) -> None:
    """Raise Forbidden (403) unless ``access`` may replace ``old`` (None: a create) by ``new``
    (None: a delete) as ``res_type/res_id``; see the module docstring."""
    if not applies(access, res_type):
        return
    if access.patient is not None:
        raise Forbidden(f"A patient-context token may only write data of its own person, not {res_type}")
    rule = _RULES.get(res_type)
    if rule is None:
        raise Forbidden(f"{res_type} resources are written by trusted clients only")
    refusal = rule(_Owner(conn, access), res_id, old, new)
    if refusal is not None:
        raise Forbidden(refusal)


def check_unchanged(
    conn: Connection, access: AccessContext, res_type: str, res_id: str, stored: Resource
) -> None:
    """Raise Forbidden unless ``access`` may be answered the unchanged ``stored`` version (a write
    that stores nothing needs what a read needs)."""
    if applies(access, res_type) and (access.patient is not None or res_type not in READ_BY_ALL):
        check_write(conn, access, res_type, res_id, stored, stored)
