"""AuditEvent resources for every access decision (FHIR R4 auditevent.html).

One AuditEvent per REST interaction (auditevent.html#6.4.4.1 "RESTful activity": type
``rest``, subtype the restful-interaction code), stating who asked (agent: the OAuth
client as ``who.identifier`` and its Organization as ``who.reference``, requestor),
why (purposeOfEvent), what (entity: the resource, the person, the search query) and what
decided (entity: the deciding Consent, or the policy in ``entity.detail``). Break-glass
access carries purposeOfEvent ``BTG``, the subtype and tag ``break-glass`` (searchable by
auditors) and the reason in ``entity.detail``. No personal data beyond references: the
values of name, birth date, address, telecom and identifier search parameters are masked.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.kit.ids import new_id
from fhir_gateway.kit.query_string import urlencode
from fhir_gateway.kit.timeutil import fhir_instant, utcnow

GATEWAY = "fhir-gateway"
AUDIT_SYSTEM = "urn:fhir-gateway:audit"
CLIENT_SYSTEM = "urn:fhir-gateway:client-id"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BREAK_GLASS = {"system": AUDIT_SYSTEM, "code": "break-glass", "display": "Break-glass access"}

_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "notify": "R",
}
# Interactions of the gateway that are not REST interactions (restful-interaction has no code)
_GATEWAY_INTERACTIONS = {"notify": "Subscription notification (FHIR R4 subscription.html)"}
_PERSONAL_PARAMS = frozenset(
    {"name", "family", "given", "phonetic", "birthdate", "address", "address-city", "address-postalcode",
     "address-state", "address-country", "telecom", "phone", "email", "identifier", "_content", "_text"}
)  # fmt: skip


# A query as an access's record carries it: its text, or its (name, value) pairs (a search's,
# encoded here rather than in the serving process)
Query = str | Sequence[Sequence[str]]


def masked_query(query: Query) -> str:
    """``query`` with the values of person-identifying search parameters replaced by ``***``."""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query:
        tokens = {t for part in key.split(".") for t in part.split(":")}
        pairs.append((key, "***" if tokens & _PERSONAL_PARAMS else value))
    return urlencode(pairs, safe=":/,|*")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _entity(what: str | None, entity_type: str, role: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _coding(ENTITY_TYPE, entity_type), "role": _coding(OBJECT_ROLE, role)}
    if what:
        out["what"] = {"reference": what}
    out.update(extra)
    return out


def audit_event_for(
    access: AccessContext,
    interaction: str,
    res_type: str | None,
    res_id: str | None,
    patient_id: str | None,
    outcome_ok: bool,
    decided_by: str | None,
    query: Query | None,
    *,
    outcome: str | None = None,
    recorded: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An AuditEvent (auditevent.html) for one interaction of ``access``.

    ``interaction``: a restful-interaction code (read, vread, search-type, create, update,
    patch, delete, history-*, operation...); ``outcome`` overrides 0 (ok) / 4 (refused),
    e.g. "8" for a server error; ``decided_by``: ``Consent/<id>`` or a policy text;
    ``event_id``: the event's id (a new one by default).
    """
    purposes = [_coding(PURPOSE_SYSTEM, access.purpose)]
    if access.break_glass:
        purposes.append(_coding(PURPOSE_SYSTEM, "BTG", "break the glass"))
    who: dict[str, Any] = {"identifier": {"system": CLIENT_SYSTEM, "value": access.client_id}}
    if access.organization:
        who["reference"] = access.organization
    agents: list[dict[str, Any]] = [{"who": who, "requestor": True, "purposeOfUse": [{"coding": purposes}]}]
    if access.practitioner:
        agents.append({"who": {"reference": access.practitioner}, "requestor": False})
    entities: list[dict[str, Any]] = []
    if res_type and res_id:
        entities.append(_entity(f"{res_type}/{res_id}", "2", "4"))
    if patient_id and (res_type, res_id) != ("Patient", patient_id):
        entities.append(_entity(f"Patient/{patient_id}", "1", "1"))
    elif patient_id:  # the resource is the person: a Person entity with role Patient
        entities[-1].update(type=_coding(ENTITY_TYPE, "1"), role=_coding(OBJECT_ROLE, "1"))
    if query is not None:
        text = f"{res_type}?{masked_query(query)}" if res_type else f"?{masked_query(query)}"
        entities.append(_entity(None, "2", "24", query=base64.b64encode(text.encode()).decode()))
    if decided_by:
        detail = [{"type": "decided-by", "valueString": decided_by}]
        consent = decided_by if decided_by.startswith("Consent/") else None
        entities.append(_entity(consent, "2", "13", detail=detail))
    if access.break_glass:
        reason = access.break_glass[:200]
        entities.append(
            _entity(None, "2", "13", detail=[{"type": "break-glass-reason", "valueString": reason}])
        )
    if interaction in _GATEWAY_INTERACTIONS:
        subtypes = [_coding(AUDIT_SYSTEM, interaction, _GATEWAY_INTERACTIONS[interaction])]
    else:
        subtypes = [_coding(INTERACTION_SYSTEM, interaction)]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id or new_id(),
        "type": _coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"
        ),
        "subtype": subtypes,
        "action": _ACTIONS.get(interaction, "E"),
        "recorded": fhir_instant(recorded or utcnow()),
        "outcome": outcome or ("0" if outcome_ok else "4"),
        "purposeOfEvent": [{"coding": purposes}],
        "agent": agents,
        "source": {
            "site": GATEWAY,
            "observer": {"display": GATEWAY},
            "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
    }
    if not outcome_ok:
        event["outcomeDesc"] = "access refused" if outcome in (None, "4") else "request failed"
    if entities:
        event["entity"] = entities
    if access.break_glass:
        subtypes.append(dict(BREAK_GLASS))
        event["meta"] = {"tag": [dict(BREAK_GLASS)]}
    return event


# An access as a REST unit keeps it (``audit_record``): the arguments of ``audit_event_for``
# as a JSON array, which the audit writer process turns into the AuditEvent (``event_of``).
# Building the event took about 40 µs of a read's CPU in the serving process; the record
# takes a few, and the writer builds events a batch at a time.
AuditItem = dict[str, Any] | list[Any]  # an AuditEvent, or an access's record
AuditSink = Callable[[Sequence[AuditItem]], None]  # where a unit's events go when it ends
RECORD_FIELDS = 14


def audit_record(
    access: AccessContext,
    interaction: str,
    res_type: str | None,
    res_id: str | None,
    patient_id: str | None,
    outcome_ok: bool,
    decided_by: str | None,
    query: Query | None,
) -> list[Any]:
    """``audit_event_for``'s arguments, with the event's id and time (``event_of`` builds it)."""
    return [
        new_id(),
        time.time(),
        interaction,
        res_type,
        res_id,
        patient_id,
        outcome_ok,
        decided_by,
        query,
        access.client_id,
        access.organization,
        access.practitioner,
        access.purpose,
        access.break_glass,
    ]


def record_kind(record: list[Any]) -> tuple[Any, ...]:
    """What the token values of the AuditEvent of an ``audit_record`` depend on (its type,
    subtype, action, outcome, entities' types and roles, tag; ``audit_event_for``): records of
    one kind make events with the same tokens, whatever their ids, times, people and callers."""
    _, _, interaction, res_type, res_id, patient_id, ok, decided_by, query = record[:9]
    if not patient_id:
        person = None
    else:
        person = "self" if (res_type, res_id) == ("Patient", patient_id) else "other"
    has_resource, break_glass = bool(res_type and res_id), bool(record[13])
    return (interaction, bool(ok), has_resource, person, query is not None, bool(decided_by), break_glass)


def is_record(item: Any) -> bool:
    """Whether ``item`` has the shape of an ``audit_record`` (after a JSON round trip too)."""
    return isinstance(item, list) and len(item) == RECORD_FIELDS and isinstance(item[0], str)


def audit_id(item: AuditItem) -> str | None:
    """The id of an AuditEvent or of the event an ``audit_record`` makes."""
    if isinstance(item, list):
        return str(item[0])
    found = item.get("id")
    return str(found) if found else None


def event_of(item: AuditItem) -> dict[str, Any]:
    """The AuditEvent of ``item``: itself, or the one its record describes."""
    if isinstance(item, dict):
        return item
    event_id, recorded, interaction, res_type, res_id, patient_id, ok, decided_by, query = item[:9]
    client_id, organization, practitioner, purpose, break_glass = item[9:]
    access = AccessContext(
        client_id,
        (),
        organization=organization,
        practitioner=practitioner,
        purpose=purpose,
        break_glass=break_glass,
    )
    when = datetime.fromtimestamp(recorded, UTC)
    return audit_event_for(
        access,
        interaction,
        res_type,
        res_id,
        patient_id,
        ok,
        decided_by,
        query,
        recorded=when,
        event_id=event_id,
    )


def audit_patient(event: dict[str, Any]) -> str | None:
    """The person an AuditEvent is about (its entity with role Patient), for ``patient_id``."""
    for entity in event.get("entity", []):
        role = entity.get("role", {})
        ref = str(entity.get("what", {}).get("reference", ""))
        if role.get("code") == "1" and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None
