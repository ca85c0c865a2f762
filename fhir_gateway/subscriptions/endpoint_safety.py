"""No server-side request forgery through ``Subscription.channel.endpoint`` (issue 7).

A partner chooses the URL the gateway will call. Without care, a Subscription could make
the gateway probe or post to the deployment's own network (the database admin console,
cloud metadata at 169.254.169.254...). Rules:

- production mode: ``https`` only; development also accepts ``http``;
- the endpoint's addresses must be public (``ipaddress.is_global``) unless the deployment
  allows private endpoints (``FHIR_GATEWAY_SUBSCRIPTION_ALLOW_PRIVATE_ENDPOINTS``);
- checked when the Subscription is written (host given as an address or ``localhost``) and
  again before every delivery, on the addresses the host name resolves to at that moment.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from fhir_gateway.kit.errors import Unprocessable

Resolver = Callable[[str], Sequence[str]]
WHERE = ["Subscription.channel.endpoint"]


class UnsafeEndpoint(Exception):
    """The endpoint may not be called (scheme or address refused)."""


def system_resolver(host: str) -> list[str]:
    """The addresses ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def check_endpoint_url(url: str, *, production: bool, allow_private: bool) -> None:
    """422 when ``url`` may never be called (at Subscription write)."""
    try:
        _check_url(url, production=production)
        host = urlsplit(url).hostname or ""
        literal = _address(host)
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            literal = ipaddress.ip_address("127.0.0.1")
        if literal is not None and not allow_private and not literal.is_global:
            raise UnsafeEndpoint(f"the endpoint address {literal} is not public")
    except UnsafeEndpoint as exc:
        raise Unprocessable(f"Subscription endpoint refused: {exc}", expression=WHERE) from None


def check_before_delivery(url: str, *, production: bool, allow_private: bool, resolve: Resolver) -> None:
    """Raise UnsafeEndpoint unless every address the host resolves to now may be called."""
    _check_url(url, production=production)
    host = urlsplit(url).hostname or ""
    literal = _address(host)
    addresses = [str(literal)] if literal is not None else list(resolve(host))
    if not addresses:
        raise UnsafeEndpoint(f"the endpoint host '{host}' does not resolve")
    if allow_private:
        return
    for address in addresses:
        if not ipaddress.ip_address(address).is_global:
            raise UnsafeEndpoint(f"the endpoint host '{host}' resolves to a non-public address")


def _check_url(url: str, *, production: bool) -> None:
    parts = urlsplit(url)
    allowed = ("https",) if production else ("https", "http")
    if parts.scheme not in allowed:
        raise UnsafeEndpoint(f"the scheme must be {' or '.join(allowed)}")
    if not parts.hostname:
        raise UnsafeEndpoint("the endpoint URL has no host")
    if parts.username or parts.password:
        raise UnsafeEndpoint("credentials in the URL are not accepted; use channel.header")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
