"""One HTTP call of the rest-hook channel (FHIR R4 subscription.html#channels, rest-hook).

- handshake: an empty ``POST`` to the endpoint when a Subscription is requested;
- notification without payload: an empty ``POST`` to the endpoint ("ping");
- notification with payload ``application/fhir+json``: the endpoint is "interpreted as the
  service base, and an update (PUT) is made" of ``[endpoint]/[type]/[id]`` with the version
  that caused the event.

Every call carries the subscriber's ``channel.header`` values and two of ours:
``X-FHIR-Subscription`` (``Subscription/<id>``) and ``X-FHIR-Event-Number`` (1, 2, 3... per
subscription, so that receivers can drop duplicates of at-least-once delivery and notice a
gap). Redirects are not followed (an endpoint cannot bounce us to another host).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from fhir_gateway.storage.subscription_repository import EventRow, SubscriptionRow

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Outcome:
    """What the endpoint answered: delivered, gone for good (410), or failed (retry)."""

    ok: bool
    gone: bool = False
    error: str | None = None


def _headers(row: SubscriptionRow, event_number: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in row.headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    headers["X-FHIR-Subscription"] = f"Subscription/{row.sub_id}"
    if event_number is not None:
        headers["X-FHIR-Event-Number"] = str(event_number)
    return headers


def _send(
    client: httpx.Client, method: str, url: str, headers: dict[str, str], body: bytes | None
) -> Outcome:
    try:
        response = client.request(method, url, headers=headers, content=body, follow_redirects=False)
    except httpx.TimeoutException:
        return Outcome(False, error="timeout")
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"connection failed ({type(exc).__name__})")
    if 200 <= response.status_code < 300:
        return Outcome(True)
    if response.status_code == 410:
        return Outcome(False, gone=True, error="the endpoint answered 410 Gone")
    return Outcome(False, error=f"the endpoint answered HTTP {response.status_code}")


def handshake(client: httpx.Client, row: SubscriptionRow) -> Outcome:
    """The empty POST that must succeed before a Subscription becomes active."""
    return _send(client, "POST", row.endpoint, _headers(row, None), None)


def notify(client: httpx.Client, row: SubscriptionRow, event: EventRow, content: str | None) -> Outcome:
    """Deliver one event: the resource (PUT) when a payload is asked for, else a ping (POST)."""
    headers = _headers(row, event.event_number)
    if row.payload and content is not None:
        headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        url = f"{row.endpoint.rstrip('/')}/{event.res_type}/{event.res_id}"
        return _send(client, "PUT", url, headers, content.encode())
    return _send(client, "POST", row.endpoint, headers, None)
