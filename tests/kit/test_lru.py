"""The bounded memo of costly shared objects (issue 11: caches stay bounded)."""

from __future__ import annotations

import time

from fhir_gateway.auth.validation import _expired
from fhir_gateway.kit.lru import Lru


def test_size_bound_and_least_recently_used_first_out() -> None:
    memo: Lru[int] = Lru(3)
    for k in range(5):
        memo.put(k, k)
    assert len(memo) == 3
    assert memo.get(0) is None
    assert memo.get(2) == 2  # now the most recent
    memo.put(5, 5)
    assert memo.get(3) is None
    assert memo.get_or_build(2, lambda: -1) == 2


def test_expired_tokens_are_swept_out() -> None:
    memo: Lru[dict[str, float]] = Lru(100)
    now = time.time()
    for k in range(10):
        memo.put(f"t{k}", {"exp": now - 60 if k % 2 else now + 300})
    assert memo.discard_where(_expired) == 5
    assert len(memo) == 5
    assert all(memo.get(f"t{k}") is not None for k in range(0, 10, 2))
