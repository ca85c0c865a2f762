"""What a Subscription asks for: criteria, rest-hook channel, payload (FHIR R4 subscription.html).

``Subscription.criteria`` is a search URL on a stored type (``Task?owner=Organization/1``),
parsed with the same search parser as the REST API so that a criteria the server cannot
evaluate is refused at write time, not silently never matched. Only the ``rest-hook``
channel is offered (subscription.html#channels): ``channel.endpoint``, ``channel.header``
(``Name: value`` strings) and ``channel.payload`` (``application/fhir+json`` or absent for
an empty "ping" notification).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.kit.errors import BadRequest, Unprocessable
from fhir_gateway.search.parser import parse_search

PAYLOAD_TYPES = frozenset({"application/fhir+json", "application/json"})
_CHANNEL = "Subscription.channel"
_CRITERIA_SPECIALS = frozenset({"_id", "_has", "_tag", "_profile", "_security"})
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class SubscriptionSpec:
    """The parts of a Subscription the engine acts on."""

    res_type: str
    criteria: str  # the query string, without the type and "?"
    endpoint: str
    headers: tuple[str, ...]
    payload: str | None


def parse_subscription(body: dict[str, Any]) -> SubscriptionSpec:
    """The spec of a Subscription resource; 400/422 naming the element that is wrong."""
    res_type, query = _criteria(str(body.get("criteria") or ""))
    channel = body.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise Unprocessable(
            f"channel.type '{channel.get('type')}' is not supported: this server delivers rest-hook only",
            expression=["Subscription.channel.type"],
        )
    endpoint = str(channel.get("endpoint") or "")
    if not endpoint:
        raise Unprocessable("A rest-hook needs channel.endpoint", expression=[f"{_CHANNEL}.endpoint"])
    payload = channel.get("payload") or None
    if payload is not None and payload not in PAYLOAD_TYPES:
        raise Unprocessable(
            f"channel.payload '{payload}' is not supported (application/fhir+json, or none for a ping)",
            expression=["Subscription.channel.payload"],
        )
    headers = tuple(_header(str(h), i) for i, h in enumerate(channel.get("header") or []))
    return SubscriptionSpec(res_type, query, endpoint, headers, payload)


def _criteria(criteria: str) -> tuple[str, str]:
    """``Type?query`` -> (Type, query), checked by the REST search parser."""
    where = ["Subscription.criteria"]
    if not criteria:
        raise Unprocessable("Subscription.criteria is required (Task?owner=Organization/1)", expression=where)
    res_type, _, query = criteria.strip().lstrip("/").partition("?")
    if res_type not in STORED_TYPES or res_type == "AuditEvent":
        raise Unprocessable(f"criteria type '{res_type[:64]}' cannot be subscribed to here", expression=where)
    items = parse_qsl(query, keep_blank_values=True)
    if any(name.startswith("_") and name.split(":")[0] not in _CRITERIA_SPECIALS for name, _ in items):
        raise Unprocessable("criteria hold search parameters, not result parameters", expression=where)
    try:
        parse_search(res_type, items, default_count=1, max_count=1, strict=True)
    except BadRequest as exc:
        raise Unprocessable(f"criteria: {exc.diagnostics}", expression=where) from None
    return res_type, query


def _header(header: str, index: int) -> str:
    where = [f"Subscription.channel.header[{index}]"]
    name, sep, value = header.partition(":")
    if not sep or not name.strip() or any(c in header for c in "\r\n\0"):
        raise Unprocessable("A channel header is 'Name: value' on one line", expression=where)
    if name.strip().lower() in _FORBIDDEN_HEADERS:
        raise Unprocessable(f"The header '{name.strip()}' is set by the server", expression=where)
    return f"{name.strip()}: {value.strip()}"
