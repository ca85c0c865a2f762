"""SQL of the authorization server: clients, signing keys, server secrets, replayed assertions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhir_gateway.storage.auth_tables import oauth_client, server_secret, signing_key, used_assertion


@dataclass(frozen=True)
class ClientRecord:
    """A registered OAuth client (RFC 6749 §2)."""

    client_id: str
    scope: str
    secret_hash: str | None
    jwks: str | None
    jwks_url: str | None
    organization: str | None
    trusted: bool
    patient: str | None
    break_glass: bool
    revoked: bool


def add_client(conn: Connection, record: ClientRecord, created: datetime) -> bool:
    """Insert ``record``; False if the client id is taken."""
    try:
        with conn.begin_nested():
            conn.execute(insert(oauth_client).values(created=created, **record.__dict__))
    except IntegrityError:
        return False
    return True


def get_client(conn: Connection, client_id: str) -> ClientRecord | None:
    row = conn.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
    if row is None:
        return None
    return ClientRecord(
        row.client_id,
        row.scope,
        row.secret_hash,
        row.jwks,
        row.jwks_url,
        row.organization,
        row.trusted,
        row.patient,
        row.break_glass,
        row.revoked,
    )


def is_active(conn: Connection, client_id: str) -> bool:
    """True when the client exists and is not revoked (checked on every request)."""
    revoked = conn.execute(_REVOKED, {"active_client": client_id}).scalar_one_or_none()
    return revoked is False


def active_clause(client_id: str) -> ColumnElement[bool]:
    """SQL condition true while ``client_id`` is registered and not revoked (for folding into a query)."""
    return exists().where(oauth_client.c.client_id == client_id, oauth_client.c.revoked.is_(False))


_REVOKED = select(oauth_client.c.revoked).where(oauth_client.c.client_id == bindparam("active_client"))


def list_clients(conn: Connection) -> list[ClientRecord]:
    ids = conn.execute(select(oauth_client.c.client_id).order_by(oauth_client.c.client_id)).scalars().all()
    return [c for c in (get_client(conn, i) for i in ids) if c is not None]


def revoke_client(conn: Connection, client_id: str) -> bool:
    result = conn.execute(
        update(oauth_client).where(oauth_client.c.client_id == client_id).values(revoked=True)
    )
    return result.rowcount == 1


def remember_assertion(conn: Connection, jti: str, client_id: str, expires: datetime, now: datetime) -> bool:
    """Record a client assertion id; False when it was already used (RFC 7523 §3, item 7)."""
    conn.execute(delete(used_assertion).where(used_assertion.c.expires < now))
    try:
        with conn.begin_nested():
            conn.execute(
                insert(used_assertion).values(jti=f"{client_id}:{jti}", client_id=client_id, expires=expires)
            )
    except IntegrityError:
        return False
    return True


def signing_keys(conn: Connection) -> list[tuple[str, str, datetime | None]]:
    """(kid, private PEM, retired) of every key, newest first."""
    rows = conn.execute(
        select(signing_key.c.kid, signing_key.c.private_pem, signing_key.c.retired).order_by(
            signing_key.c.created.desc()
        )
    ).all()
    return [(r.kid, r.private_pem, r.retired) for r in rows]


def add_signing_key(conn: Connection, kid: str, private_pem: str, created: datetime) -> None:
    conn.execute(insert(signing_key).values(kid=kid, private_pem=private_pem, created=created))


def retire_signing_keys(conn: Connection, except_kid: str, moment: datetime) -> None:
    conn.execute(
        update(signing_key)
        .where(signing_key.c.kid != except_kid, signing_key.c.retired.is_(None))
        .values(retired=moment)
    )


def get_server_secret(conn: Connection, name: str) -> str | None:
    """The stored secret ``name`` (base64), if any."""
    return conn.execute(select(server_secret.c.secret).where(server_secret.c.name == name)).scalar()


def add_server_secret(conn: Connection, name: str, secret: str, created: datetime) -> bool:
    """Store ``secret`` as ``name`` unless another process stored one first (False then)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(server_secret).values(name=name, secret=secret, created=created))
    except IntegrityError:
        return False
    return True
