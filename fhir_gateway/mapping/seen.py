"""Business keys already seen in a file, in 12 bytes per row (issue 5: memory flat in file size).

The uniqueness check of a file (partner-formats "Common rules": duplicates name the first
line) must remember every key. A dict of Python ints costs about 100 bytes per row (100 MB
for a million rows); here the keys (8-byte digests) and their first lines live in two sorted
typed arrays, searched by bisection, and the latest keys in a small dict merged into the
arrays when it fills up.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left

RECENT = 131_072


class SeenKeys:
    """A set of 64-bit keys, each with the line where it was first seen."""

    def __init__(self, recent: int = RECENT) -> None:
        self._keys = array("Q")
        self._lines = array("I")
        self._recent: dict[int, int] = {}
        self._limit = recent

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def first_line(self, key: int) -> int | None:
        """The line where ``key`` was first seen, or None."""
        line = self._recent.get(key)
        if line is not None:
            return line
        index = bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            return int(self._lines[index])
        return None

    def add(self, key: int, line: int) -> None:
        """Remember ``key`` first seen on ``line`` (a key not seen yet)."""
        self._recent[key] = line
        if len(self._recent) >= self._limit:
            self._merge()

    def _merge(self) -> None:
        keys, lines = array("Q"), array("I")
        for key, line in heapq.merge(zip(self._keys, self._lines, strict=True), sorted(self._recent.items())):
            keys.append(key)
            lines.append(line)
        self._keys, self._lines, self._recent = keys, lines, {}
