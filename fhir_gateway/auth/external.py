"""External token issuers (e.g. Keycloak): OIDC discovery and JWKS over httpx, cached.

OpenID Connect Discovery 1.0 §4: ``{issuer}/.well-known/openid-configuration`` names the
``jwks_uri``. Keys are cached; an unknown ``kid`` triggers a refetch, at most once every
``REFETCH_SECONDS`` per issuer so that forged kids cannot make us hammer the issuer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from joserfc.jwk import KeySet

REFETCH_SECONDS = 30.0


class IssuerKeys:
    """The JWKS of one trusted issuer."""

    def __init__(self, issuer: str, client: httpx.Client | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self._client = client or httpx.Client(timeout=5)
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = float("-inf")

    def _fetch(self) -> None:
        config: dict[str, Any] = self._client.get(f"{self.issuer}/.well-known/openid-configuration").json()
        jwks = self._client.get(str(config["jwks_uri"])).json()
        self._keys = KeySet.import_key_set(jwks)
        self._kids = {str(k.get("kid")) for k in jwks.get("keys", [])}
        self._fetched_at = time.monotonic()

    def key_set(self, kid: str | None) -> KeySet | None:
        """The issuer's keys, refetched (rate-limited) when ``kid`` is unknown; None if unavailable."""
        with self._lock:
            unknown = self._keys is None or (kid is not None and kid not in self._kids)
            if unknown and time.monotonic() - self._fetched_at >= REFETCH_SECONDS:
                try:
                    self._fetch()
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    self._fetched_at = time.monotonic()
            return self._keys


class ExternalIssuers:
    """The issuers named in ``FHIR_GATEWAY_TRUSTED_ISSUERS``."""

    def __init__(self, issuers: str, client: httpx.Client | None = None) -> None:
        self.by_issuer = {
            i.strip().rstrip("/"): IssuerKeys(i.strip(), client) for i in issuers.split(",") if i.strip()
        }

    def get(self, issuer: str) -> IssuerKeys | None:
        return self.by_issuer.get(issuer.rstrip("/"))
