"""Transaction-scoped locks that serialise conditional writes (FHIR R4 http.html#ccreate).

PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit hash of the key, released at commit.
SQLite: write transactions already hold the database lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, text


def lock_for_transaction(conn: Connection, key: str) -> None:
    """Block until no other transaction holds ``key``; held until this one ends."""
    if conn.dialect.name != "postgresql":
        return
    number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
