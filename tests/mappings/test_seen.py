"""The compact set of business keys answers like a dict (mapping/seen.py)."""

from __future__ import annotations

import random

from fhir_gateway.mapping.seen import SeenKeys


def test_first_lines_survive_merges() -> None:
    rng = random.Random(5)
    seen, expected = SeenKeys(recent=64), {}
    for line in range(2, 5000):
        key = rng.getrandbits(64) if rng.random() < 0.8 else rng.choice([*expected] or [1])
        first = seen.first_line(key)
        assert first == expected.get(key)
        if first is None:
            seen.add(key, line)
            expected[key] = line
    assert len(seen) == len(expected)
    assert all(seen.first_line(k) == v for k, v in expected.items())
    assert seen.first_line(2**64 - 1) is None or (2**64 - 1) in expected
