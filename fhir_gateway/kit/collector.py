"""Fewer garbage collections during bulk work (a partner file import, issue 5).

CPython's cyclic collector runs a full collection whenever enough objects have survived
younger ones, and each full collection walks every object of the process: the gateway's
modules, models and caches (over 100,000 objects) as well as the import's own. An import
allocates many short-lived containers (rows, resources, index rows; freed by reference
counting, not by the collector), so its collections found almost nothing and cost 15 % of
its CPU. While bulk work runs, the objects that existed before it are left out of
collections (``gc.freeze``) and the youngest generation is collected every 10,000
allocations instead of 700. Cycles are still collected, a little later.

For a process of its own only (``fhir-gateway import``): in a server, the pools of ended
event loops are released by the collector (``storage.database``), and frozen or rarer
collections left their connections open until PostgreSQL refused new clients.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLD = (10_000, 10, 10)
_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collections tuned for bulk work inside the block (nested or concurrent blocks share the
    setting; the last one to end restores the previous one)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*BULK_THRESHOLD)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
