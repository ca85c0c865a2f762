"""Server-assigned ids: UUIDv7, unique, in time order, never repeated by a forked child."""

from __future__ import annotations

import os
import uuid

from fhir_gateway.kit.ids import new_id


def test_uuid7_unique_and_time_ordered() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
    prefixes = [text[:13] for text in ids]  # 48 bits of milliseconds
    assert prefixes == sorted(prefixes)


def test_forked_child_draws_new_random_bytes() -> None:
    new_id()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, "".join(new_id()[14:] for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = "".join(new_id()[14:] for _ in range(3))
    assert child
    assert child != mine
