"""Ids the server assigns to new resources (FHIR R4 resource.html#id, http.html#create).

Time-ordered UUIDs (RFC 9562 version 7: 48 bits of Unix milliseconds, then random bits):
as unique and unguessable in practice as version 4, but new ids follow each other, so the
primary key and the search index (keyed by resource id) grow at their end instead of at
random places: writes touch a few hot pages instead of the whole index, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A new UUIDv7 as a FHIR id (36 characters of [0-9a-f-])."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((random >> 64) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 9562 variant
    value |= random & (2**62 - 1)  # rand_b
    return str(uuid.UUID(int=value))
