"""Ids the server assigns to new resources (FHIR R4 resource.html#id, http.html#create).

Time-ordered UUIDs (RFC 9562 version 7: 48 bits of Unix milliseconds, then random bits):
as unique and unguessable in practice as version 4, but new ids follow each other, so the
primary key and the search index (keyed by resource id) grow at their end instead of at
random places: writes touch a few hot pages instead of the whole index, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import os
import threading
import time

_POOL = 4096  # random bytes read from the system at once (one system call per 409 ids)
_local = threading.local()


def _forget_pool() -> None:
    """A forked child must not reuse its parent's random bytes (the same ids in two processes)."""
    _local.pool, _local.at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _random10() -> int:
    """10 bytes of ``os.urandom``, taken from a per-thread pool refilled by large reads."""
    pool: bytes = getattr(_local, "pool", b"")
    at: int = getattr(_local, "at", 0)
    if at + 10 > len(pool):
        pool, at = os.urandom(_POOL), 0
        _local.pool = pool
    _local.at = at + 10
    return int.from_bytes(pool[at : at + 10], "big")


def new_id() -> str:
    """A new UUIDv7 as a FHIR id (36 characters of [0-9a-f-])."""
    millis = time.time_ns() // 1_000_000
    random = _random10()
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((random >> 64) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 9562 variant
    value |= random & (2**62 - 1)  # rand_b
    hexa = f"{value:032x}"
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"
