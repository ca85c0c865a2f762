"""Garbage-collector settings of a serving process.

A request allocates a few thousand short-lived objects; nearly all are freed by reference
counting, yet CPython's default threshold (a young collection every 700 net allocations)
ran a collection several times per request, and each older-generation pass walked the
hundreds of thousands of long-lived objects of the loaded application (models, schemas,
compiled statements): about a tenth of a read's CPU. After start-up the application's
objects are moved out of the collector's sight (``gc.freeze``) and young collections run
less often; cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
_DEFAULT_THRESHOLD = gc.get_threshold()


def settle_after_startup() -> None:
    """Freeze what start-up allocated and space out young-generation collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def restore_at_shutdown() -> None:
    """Give the frozen objects back to the collector (an application stopped within a
    longer-lived process, as in tests, must not leave its cycles uncollectable)."""
    gc.unfreeze()
    gc.set_threshold(*_DEFAULT_THRESHOLD)
