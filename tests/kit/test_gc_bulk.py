"""Bulk work runs with fewer garbage collections, and the setting is restored after it."""

from __future__ import annotations

import gc
import weakref

from fhir_gateway.kit.gc_tuning import BULK_COLLECT_EVERY, BULK_THRESHOLD, bulk_checkpoint, fewer_collections


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


def _watched_cycle() -> list[bool]:
    """A new unreachable reference cycle; the list returned gets True when it is freed."""
    freed: list[bool] = []

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    weakref.finalize(node, freed.append, True)
    return freed


def test_cycles_made_during_bulk_work_are_freed_every_few_checkpoints() -> None:
    """Young collections are rare in bulk work: the checkpoints free the cycles, so memory
    stays flat over a long import (one checkpoint per chunk of rows)."""
    with fewer_collections():
        gc.collect()
        freed = _watched_cycle()
        for _ in range(BULK_COLLECT_EVERY - 1):
            bulk_checkpoint()
        assert freed == []  # no young collection came: 500,000 allocations not reached
        bulk_checkpoint()
        assert freed == [True]


def test_checkpoints_do_nothing_outside_bulk_work() -> None:
    gc.disable()
    try:
        freed = _watched_cycle()
        for _ in range(2 * BULK_COLLECT_EVERY):
            bulk_checkpoint()
        assert freed == []
    finally:
        gc.enable()
        gc.collect()
    assert freed == [True]
