"""A pytest plugin that starts every test a moment before midnight (UTC), so that a test which
takes "today" at one moment and relies on it at another fails here rather than in a CI run that
happens to cross midnight (stop 37's did).

``make test-midnight`` loads it with libfaketime (Debian's ``faketime``) preloaded: before each
test it writes the clock's offset from the real time to ``FAKETIME_TIMESTAMP_FILE``, which
libfaketime reads again at every clock call (``FAKETIME_NO_CACHE=1``). The test then starts
0.05–0.6 s before the next midnight. The few tests whose timed waits span threads or processes
time out under libfaketime whatever the offset (even none): they are marked
``@pytest.mark.real_clock`` and skipped here. The run is serial (pytest-xdist's workers would
share the offset file). Without ``FAKETIME_TIMESTAMP_FILE`` the plugin does nothing.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

_FILE = os.environ.get("FAKETIME_TIMESTAMP_FILE")
_offset = 0.0  # seconds libfaketime's clock is ahead of the real one (``make test-midnight`` starts at 0)


def _move_clock(offset: float) -> None:
    """Set libfaketime's clock to the real time plus ``offset`` (seconds)."""
    global _offset
    assert _FILE is not None
    _offset = round(offset, 3)
    with open(_FILE + ".new", "w") as text:
        text.write(f"{_offset:+.3f}s")
    os.replace(_FILE + ".new", _FILE)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _FILE is None:
        return
    if item.get_closest_marker("real_clock") is not None:
        pytest.skip("needs the real clock: libfaketime's breaks its timed waits across threads or processes")
    real = time.time() - _offset
    tomorrow = datetime.fromtimestamp(real, UTC).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC).timestamp()
    _move_clock(midnight - random.uniform(0.05, 0.6) - real)
