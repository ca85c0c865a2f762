"""A small thread-safe LRU memo for objects that are costly to build and safe to share."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):  # noqa: UP046 - Python 3.11 has no type parameter syntax
    """``get_or_build(key, build)``: the cached value, or ``build()`` stored under ``key``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()  # outside the lock: two builders may race, both results are equal
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get(self, key: Hashable) -> V | None:
        """The cached value of ``key``, if any."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        """Remember ``value`` under ``key``, forgetting the least recently used beyond ``size``."""
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def discard_where(self, predicate: Callable[[V], bool]) -> int:
        """Forget every value for which ``predicate`` is true (e.g. expired); how many went."""
        with self._lock:
            gone = [key for key, value in self._items.items() if predicate(value)]
            for key in gone:
                del self._items[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._items)
