"""Garbage-collector settings: of a serving process, and of a bulk command's own process.

A request or an imported row allocates many short-lived objects, nearly all freed by
reference counting, yet CPython's default threshold (a young collection every 700 net
allocations) ran collections constantly, and each older-generation pass walked the
hundreds of thousands of long-lived objects of the loaded application (models, schemas,
compiled statements): about a tenth of a read's CPU, 15 % of an import's. The long-lived
objects are moved out of the collector's sight (``gc.freeze``) and young collections run
less often; cycles are still collected, a little later.

- A server: ``settle_after_startup`` once its application is loaded, ``restore_at_shutdown``
  when it stops (an application stopped inside a longer-lived process, as in tests, must
  not leave its cycles uncollectable).
- ``fhir-gateway import``: ``fewer_collections`` around the import, in its own process only.
  A chunk of rows holds a few hundred thousand objects while it is built and stored, and each
  young collection walked them again (and promoted them into the older generations walked
  later): with a young collection every 10,000 allocations, collections were 15 % of the
  import's CPU and found almost nothing to free. Young collections now wait for 500,000 net
  allocations, more than a chunk holds, so an import of 100,000 rows runs none. The cycles an
  import still makes (SQLAlchemy builds a few per lookup statement) are freed by a full
  collection every ``BULK_COLLECT_EVERY`` chunks (``bulk_checkpoint``), about a tenth of a second
  each, so memory stays flat however long the file; no value list may hang on such a cycle
  meanwhile (``storage.search_repository._among``).
  Inside a server it would undo the server's own setting when it ends, and rarer
  collections there kept the pools of ended event loops, and their PostgreSQL connections,
  open until the server refused new clients.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 20_000  # a server's
BULK_THRESHOLD = (500_000, 10, 10)  # a bulk command's
BULK_COLLECT_EVERY = 50  # units of bulk work (chunks of rows) between two full collections
_DEFAULT_THRESHOLD = gc.get_threshold()


def settle_after_startup() -> None:
    """Freeze what start-up allocated and space out young-generation collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def restore_at_shutdown() -> None:
    """Give the frozen objects back to the collector and restore the default thresholds."""
    gc.unfreeze()
    gc.set_threshold(*_DEFAULT_THRESHOLD)


_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = _DEFAULT_THRESHOLD
_checkpoints = 0


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collections tuned for bulk work inside the block (nested or concurrent blocks share the
    setting; the last one to end restores the previous one)."""
    global _active, _saved, _checkpoints
    with _lock:
        if _active == 0:
            _checkpoints = 0
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


def bulk_checkpoint() -> None:
    """A unit of bulk work (a chunk of an import's rows) is done: every ``BULK_COLLECT_EVERY``
    of them inside ``fewer_collections``, a full collection frees the cycles made meanwhile.
    Outside ``fewer_collections`` (an import served over HTTP) it does nothing."""
    global _checkpoints
    if _active == 0:
        return
    _checkpoints += 1
    if _checkpoints % BULK_COLLECT_EVERY == 0:
        gc.collect()
