"""Opaque paging cursors (issue 11): a page position bound to a client and to its query.

FHIR R4 search.html#paging leaves the content of paging links to the server. Here a link
replays the query in the clear plus ``_cursor``, whose value is
``base64url(payload) "." base64url(HMAC-SHA256(key, payload))`` without padding; the payload
is compact JSON::

    {"v": 1, "c": "<client id>", "q": "<query digest>", "o": <offset>, "t": <issued, Unix s>}

The query digest is a keyed hash (HMAC-SHA256, 128 bits) of the link's path and its
parameters, sorted, minus those that do not change what matches (``UNBOUND``): a cursor
replayed on another query, or with a parameter added, changed or removed, is refused.
Checks, in order: form and signature (400), client (403), query (400), age (410).
This module is pure; the key comes from ``auth.paging_key`` (one per deployment).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from fhir_gateway.kit.errors import BadRequest, FhirError, Forbidden

PARAM = "_cursor"
VERSION = 1
# page size and presentation: changing them keeps the same matches, so a cursor still applies
UNBOUND = frozenset({PARAM, "_offset", "_count", "_format", "_pretty"})
MAX_LENGTH = 2048  # far above any cursor this server issues (a client id is at most 255 characters)
MAX_OFFSET = 10**9


class CursorExpired(FhirError):
    """410: the paging link is older than the cursors' lifetime."""

    status, code = 410, "expired"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_digest(key: bytes, scope: str, params: Iterable[tuple[str, str]]) -> str:
    """The keyed digest of a query: ``scope`` (the link's URL without query) and its parameters."""
    bound = sorted((name, value) for name, value in params if name not in UNBOUND)
    data = orjson.dumps([scope, bound])
    return _b64(hmac.digest(key, b"query\0" + data, "sha256")[:16])


@dataclass(slots=True)
class CursorIssuer:
    """Makes the cursors of one answer's links: same client, query and issue time.

    The query's digest is computed at the first cursor made (``known_digest`` when the caller
    has it already): a page whose links need no cursor (a first page without a next one) costs
    no hash.
    """

    key: bytes
    client_id: str
    scope: str
    params: list[tuple[str, str]]
    issued: int
    known_digest: str | None = None

    @property
    def digest(self) -> str:
        """``query_digest`` of the links' query."""
        if self.known_digest is None:
            self.known_digest = query_digest(self.key, self.scope, self.params)
        return self.known_digest

    def cursor(self, offset: int) -> str:
        payload = orjson.dumps(
            {"v": VERSION, "c": self.client_id, "q": self.digest, "o": offset, "t": self.issued}
        )
        signature = hmac.digest(self.key, payload, "sha256")  # OpenSSL's one-shot HMAC
        return f"{_b64(payload)}.{_b64(signature)}"


def _malformed() -> BadRequest:
    return BadRequest(
        f"{PARAM}: the paging cursor is malformed or was altered; "
        "follow the Bundle's links as they are given",
        expression=[PARAM],
    )


def open_cursor(key: bytes, raw: str, *, client_id: str, digest: str, now: int, ttl: int) -> int:
    """The offset ``raw`` points at, after every check (see the module docstring).

    The 403 says nothing of the query or of the client the cursor was issued to.
    """
    if len(raw) > MAX_LENGTH or raw.count(".") != 1:
        raise _malformed()
    body, _, signature = raw.partition(".")
    try:
        payload, given = _unb64(body), _unb64(signature)
    except (binascii.Error, ValueError):
        raise _malformed() from None
    if not hmac.compare_digest(hmac.digest(key, payload, "sha256"), given):
        raise _malformed()
    try:
        fields = orjson.loads(payload)
        version, client, query, offset, issued = (fields[k] for k in ("v", "c", "q", "o", "t"))
    except (orjson.JSONDecodeError, TypeError, KeyError):
        raise _malformed() from None
    if version != VERSION or not isinstance(offset, int) or not isinstance(issued, int):
        raise _malformed()
    if not hmac.compare_digest(str(client).encode(), client_id.encode()):
        raise Forbidden(
            "This paging link was issued to another client: paging links are bound to the client "
            "that ran the search; run the search with your own token"
        )
    if not hmac.compare_digest(str(query).encode(), digest.encode()):
        raise BadRequest(
            f"{PARAM}: the paging cursor belongs to another query (its parameters were changed); "
            "follow the Bundle's links as they are given",
            expression=[PARAM],
        )
    if now - issued > ttl:
        raise CursorExpired(
            f"{PARAM}: this paging link has expired (paging links are valid {ttl} s); run the search again",
            expression=[PARAM],
        )
    return max(0, min(offset, MAX_OFFSET))
