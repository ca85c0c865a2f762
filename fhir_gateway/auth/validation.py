"""Access token validation for every FHIR request (RFC 6750, RFC 7519, SMART v2).

A token is accepted when its signature verifies with one of our keys (or a trusted external
issuer's), its algorithm is asymmetric (``none`` and HS* are refused), it is within its
validity period, ``iss`` and ``aud`` are ours, and the client has not been revoked (checked
in the database on every request, inside the request's own transaction, so that
revocation takes effect at once: ``ensure_client_active``).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from sqlalchemy import Connection

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.external import ExternalIssuers
from fhir_gateway.auth.keys import SigningKeys
from fhir_gateway.auth.tokens import (
    ACCEPTED_ALGORITHMS,
    LEEWAY_SECONDS,
    check_time_claims,
    decode_header_kid,
    invalid_token,
    verify_signed,
)
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.lru import Lru
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database

VERIFIED_TOKENS_KEPT = 10_000
ACCESS_CONTEXTS_KEPT = 10_000  # per (Authorization, purpose, break-glass headers, default purpose)
PURGE_EVERY = 256  # verified tokens added between two sweeps of the expired ones


def _expired(claims: dict[str, Any]) -> bool:
    exp = claims.get("exp")
    return isinstance(exp, int | float) and exp + LEEWAY_SECONDS < time.time()


def _unverified_issuer(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        claims = jsonutil.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, FhirError):
        raise invalid_token("malformed token") from None
    return claims.get("iss") if isinstance(claims, dict) else None


class TokenValidator:
    """Validates bearer tokens of the built-in server and of trusted external issuers."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        keys: SigningKeys,
        issuers: ExternalIssuers | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys
        self.issuers = issuers or ExternalIssuers(settings.trusted_issuers)
        self._verified: Lru[dict[str, Any]] = Lru(VERIFIED_TOKENS_KEPT)
        self._added = 0
        # what ``auth.dependency.require_access`` built from a request's access headers and the
        # claims it was built from (their time claims checked at every use, as ``validate`` does)
        self.access_contexts: Lru[tuple[AccessContext, dict[str, Any]]] = Lru(ACCESS_CONTEXTS_KEPT)

    def validate(self, token: str) -> dict[str, Any]:
        """The token's claims, or a 401 FhirError saying why not.

        A token whose signature was verified once is remembered until it expires (the
        signature cannot change); its time claims are checked again on every use. Expired
        tokens are swept out, so that memory follows the tokens in use, not those ever seen.
        """
        cached = self._verified.get(token)
        if cached is not None:
            check_time_claims(cached)
            return dict(cached)
        claims = self._verify(token)
        self._verified.put(token, claims)
        self._added += 1
        if self._added % PURGE_EVERY == 0:
            self._verified.discard_where(_expired)
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        alg, kid = decode_header_kid(token)
        if alg not in ACCEPTED_ALGORITHMS:
            raise invalid_token(f"algorithm {alg!r} is not accepted")
        issuer = _unverified_issuer(token)
        if issuer == self.settings.base_url:
            claims = verify_signed(token, self.keys.key_set(kid), ACCEPTED_ALGORITHMS)
            if claims.get("aud") != self.settings.fhir_base:
                raise invalid_token("wrong audience")
            claims["local_client"] = True
        else:
            claims = self._validate_external(token, issuer, kid)
        check_time_claims(claims)
        return claims

    def _validate_external(self, token: str, issuer: str | None, kid: str | None) -> dict[str, Any]:
        keys = self.issuers.get(issuer) if issuer else None
        if keys is None:
            raise invalid_token("untrusted issuer")
        key_set = keys.key_set(kid)
        if key_set is None:
            raise invalid_token("the issuer's keys are not available")
        claims = verify_signed(token, key_set, ACCEPTED_ALGORITHMS)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.settings.fhir_base not in audiences and self.settings.external_audience not in audiences:
            raise invalid_token("wrong audience")
        claims.setdefault("client_id", claims.get("azp") or claims.get("sub"))
        name = self.settings.issuer_organization_claim
        organization = claims.get(name)
        if isinstance(organization, list):  # a multivalued mapper: one Organization or none
            if len(organization) != 1:
                raise invalid_token(f"claim {name!r} names several organisations")
            organization = organization[0]
        if isinstance(organization, int) and not isinstance(organization, bool):
            organization = str(organization)
        if organization:
            if not isinstance(organization, str) or "/" in organization.removeprefix("Organization/"):
                raise invalid_token(f"claim {name!r} is not an Organization id")
            org = organization
            claims["organization"] = org if org.startswith("Organization/") else f"Organization/{org}"
        else:
            claims.pop("organization", None)  # only the configured claim speaks for the client
        claims["trusted"] = False
        return claims


def ensure_client_active(conn: Connection, client_id: str) -> None:
    """401 unless the client is registered and not revoked (one indexed lookup)."""
    if not client_repository.is_active(conn, client_id):
        raise invalid_token("client revoked or unknown")
