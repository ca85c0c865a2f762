"""Tables of the built-in authorization server: clients, signing keys, used assertion ids.

RFC 6749 §2 (client registration), RFC 7523 §3 (``jti`` replay protection), RFC 7517
(signing keys published as a JWK Set); ``server_secret`` holds the deployment's other keys
(the HMAC key of paging cursors), shared by every replica.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, String, Table, Text

from fhir_gateway.storage.tables import metadata

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("secret_hash", String(256), nullable=True),
    Column("jwks", Text, nullable=True),
    Column("jwks_url", String(512), nullable=True),
    Column("scope", Text, nullable=False),
    Column("organization", String(140), nullable=True),
    Column("trusted", Boolean, nullable=False, default=False),
    Column("patient", String(64), nullable=True),
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created", DateTime, nullable=False),
)

signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created", DateTime, nullable=False),
    Column("retired", DateTime, nullable=True),
)

server_secret = Table(
    "server_secret",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("secret", Text, nullable=False),  # base64
    Column("created", DateTime, nullable=False),
)

used_assertion = Table(
    "used_assertion",
    metadata,
    Column("jti", String(256), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_used_assertion_expires", "expires"),
)
