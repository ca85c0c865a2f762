"""Bulk work runs with fewer garbage collections, and the setting is restored after it."""

from __future__ import annotations

import gc

from fhir_gateway.kit.gc_tuning import BULK_THRESHOLD, fewer_collections


def test_threshold_and_freeze_restored_after_nested_blocks() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == BULK_THRESHOLD
        assert gc.get_freeze_count() > 0
        with fewer_collections():
            assert gc.get_threshold() == BULK_THRESHOLD
        assert gc.get_threshold() == BULK_THRESHOLD
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restored_when_the_work_fails() -> None:
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_cycles_are_still_collected() -> None:
    with fewer_collections():
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
