"""The search index rows of the gateway's own AuditEvents, without the generic evaluator.

Every request writes an AuditEvent (``audit.events``), so its index rows are made once per
request: the generic ``search.indexing.extract_index_rows`` (every AuditEvent search
parameter of FHIR R4 auditevent.html#search, its FHIRPath expression evaluated step by step)
cost about a third of a read's audit. The gateway's events have a fixed shape, so their rows
are read straight from the elements each parameter's expression names:

- ``action``, ``outcome`` (code), ``source.site`` (string) → ``action``, ``outcome``, ``site``;
- ``type``, ``subtype`` (Coding), ``entity.type``, ``entity.role`` (Coding), ``meta.tag`` →
  ``type``, ``subtype``, ``entity-type``, ``entity-role``, ``_tag``;
- ``agent.who``, ``entity.what``, ``source.observer`` (Reference) → ``agent``, ``entity``,
  ``source``, and ``patient`` for those that are a Patient (``where(resolve() is Patient)``);
- ``recorded`` → ``date`` (``_id`` and ``_lastUpdated`` are answered from the resource row:
  ``search.registry.ROW_PARAMS``).

An event with any other element (an agent's ``name`` or ``role``, an entity's ``name``...),
or a code or system too long for the index, returns None: the generic extraction then
indexes it (and refuses what it refuses). tests/audit/test_index_rows.py checks that both
give the same rows for every kind of event the gateway writes.

On PostgreSQL the reference and date rows end up as the keys and range of the event's
``audit_terms`` row (``storage.audit_refs``): for an event of a kind whose first event was
indexed whole, ``audit.store`` asks for those keys alone (``event_reference_keys``) and makes
no rows to move.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_gateway.search.indexing import TOKEN_CHARS, Rows, date_range, reference_parts
from fhir_gateway.storage.audit_refs import reference_keys

_EVENT_KEYS = frozenset(
    {"resourceType", "id", "meta", "type", "subtype", "action", "recorded", "outcome", "outcomeDesc",
     "purposeOfEvent", "agent", "source", "entity"}
)  # fmt: skip
_META_KEYS = frozenset({"versionId", "lastUpdated", "tag"})
_AGENT_KEYS = frozenset({"who", "requestor", "purposeOfUse"})
_ENTITY_KEYS = frozenset({"what", "type", "role", "query", "detail"})
_SOURCE_KEYS = frozenset({"site", "observer", "type"})
_CODING_KEYS = frozenset({"system", "code", "display"})


class _Unknown(Exception):
    """The event has an element this module does not index: the generic extraction does."""


def audit_index_rows(event: dict[str, Any], *, tokens: bool = True) -> Rows | None:
    """The index rows ``extract_index_rows`` gives ``event``, or None for an unknown shape;
    without its token rows when ``tokens`` is false (their terms are known: ``audit.store``)."""
    if not event.keys() <= _EVENT_KEYS:
        return None
    try:
        return _rows(event, _Tokens(wanted=tokens))
    except (_Unknown, KeyError, TypeError, ValueError, AttributeError):
        return None


class _Tokens(list[dict[str, Any]]):
    """The token rows of an event as they are found (none made when not ``wanted``)."""

    def __init__(self, *, wanted: bool) -> None:
        super().__init__()
        self.wanted = wanted

    def add(self, make: Any, *args: Any) -> None:
        if self.wanted:
            self.append(make(*args))


def _rows(event: dict[str, Any], tokens: _Tokens) -> Rows:
    references: list[dict[str, Any]] = []
    dates: list[dict[str, Any]] = []
    patients: list[dict[str, Any]] = []
    for param in ("action", "outcome"):
        if param in event:
            tokens.add(_token, param, None, _text(event[param]), None)
    if "type" in event:
        tokens.add(_coding, "type", event["type"])
    for coding in event.get("subtype", ()):
        tokens.add(_coding, "subtype", coding)
    if "recorded" in event:
        dates.append(_date("date", event["recorded"]))
    for agent in event.get("agent", ()):
        _known(agent, _AGENT_KEYS)
    for entity in event.get("entity", ()):
        _known(entity, _ENTITY_KEYS)
        if "type" in entity:
            tokens.add(_coding, "entity-type", entity["type"])
        if "role" in entity:
            tokens.add(_coding, "entity-role", entity["role"])
    source = event.get("source")
    if source is not None:
        _known(source, _SOURCE_KEYS)
        if "site" in source:
            tokens.add(_token, "site", None, _text(source["site"]), None)
    _references(event, references, patients)
    meta = event.get("meta")
    if meta is not None:
        _known(meta, _META_KEYS)
        for coding in meta.get("tag", ()):
            tokens.add(_coding, "_tag", coding)
    rows: Rows = {}
    if tokens:
        rows["token"] = list(tokens)
    if references or patients:
        rows["reference"] = references + patients
    if dates:
        rows["date"] = dates
    return rows


def event_reference_keys(event: dict[str, Any]) -> list[str]:
    """The ``refs`` keys (``storage.audit_refs``) of the ``reference`` rows of
    ``audit_index_rows(event)``, in their order, for an event of a shape it indexes, unchecked:
    ``audit.store`` asks for those of the events of a kind of access record whose first event
    it indexed whole (every event of a kind has the same shape)."""
    keys: list[str] = []
    patient_keys: list[str] = []
    for param, value in _reference_values(event):
        ref = value.get("reference")
        if ref is not None:
            own, patient = _reference_keys(param, ref)
            keys += own
            patient_keys += patient
    return keys + patient_keys


def _reference_keys(param: str, ref: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys of the rows ``_reference`` makes of ``ref``: its own, and those for ``patient``."""
    parts = reference_parts(ref)
    if parts is None:
        return (), ()
    own = reference_keys(param, *parts)
    return own, reference_keys("patient", *parts) if param != "source" and _is_patient(ref) else ()


def recorded_range(event: dict[str, Any]) -> tuple[Any, Any]:
    """The (low, high) of the ``date`` row of ``audit_index_rows(event)`` (``recorded``)."""
    row = _date("date", event["recorded"])
    return row["low"], row["high"]


def _references(
    event: dict[str, Any], references: list[dict[str, Any]], patients: list[dict[str, Any]]
) -> None:
    """The rows of ``agent.who``, ``entity.what`` and ``source.observer``, in that order."""
    for param, value in _reference_values(event):
        _reference(param, value, references, patients if param != "source" else [])


def _reference_values(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(parameter, Reference) of ``agent.who``, ``entity.what`` and ``source.observer``."""
    for agent in event.get("agent", ()):
        if "who" in agent:
            yield "agent", agent["who"]
    for entity in event.get("entity", ()):
        if "what" in entity:
            yield "entity", entity["what"]
    source = event.get("source")
    if source is not None and "observer" in source:
        yield "source", source["observer"]


def _known(element: Any, keys: frozenset[str]) -> None:
    if not isinstance(element, dict) or not element.keys() <= keys:
        raise _Unknown


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unknown
    return value


def _token(param: str, system: str | None, code: str | None, display: str | None) -> dict[str, Any]:
    if (system is not None and len(system) > TOKEN_CHARS) or (code is not None and len(code) > TOKEN_CHARS):
        raise _Unknown  # the generic extraction refuses it, with its message
    return {"system": system, "code": code, "display": (display or "")[:255] or None, "param": param}


def _coding(param: str, coding: Any) -> dict[str, Any]:
    _known(coding, _CODING_KEYS)
    if "code" not in coding and "system" not in coding:
        raise _Unknown
    return _token(param, coding.get("system"), coding.get("code"), coding.get("display"))


def _date(param: str, value: Any) -> dict[str, Any]:
    low, high = date_range(_text(value))
    return {"low": low, "high": high, "param": param}


def _reference(
    param: str, value: Any, references: list[dict[str, Any]], patients: list[dict[str, Any]]
) -> None:
    """``value``'s row for ``param``, and for ``patient`` when it is a Patient (as
    ``search.paths`` reads ``where(resolve() is Patient)``)."""
    if not isinstance(value, dict) or not value.keys() <= {"reference", "identifier", "display"}:
        raise _Unknown
    ref = value.get("reference")
    if ref is None:
        return
    parts = reference_parts(_text(ref))
    if parts is None:
        return
    target_type, target_id, url = parts
    references.append({"target_type": target_type, "target_id": target_id, "url": url, "param": param})
    if _is_patient(ref):
        patients.append({"target_type": target_type, "target_id": target_id, "url": url, "param": "patient"})


def _is_patient(ref: str) -> bool:
    """``ref`` names a Patient (``where(resolve() is Patient)``, read from the reference)."""
    tail = ref.split("/_history/")[0]
    return tail.startswith("Patient/") or "/Patient/" in tail
