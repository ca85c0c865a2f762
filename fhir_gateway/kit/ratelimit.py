"""Per-client request rate limiting: a token bucket per client id, in this process.

Answers 429 with ``Retry-After`` (RFC 6585 §4) when a client exceeds its rate. Each worker
process keeps its own buckets: with N workers the effective limit is at most N times the
setting. A rate of 0 turns the limiter off.
"""

from __future__ import annotations

import math
import threading
import time

from fhir_gateway.kit.errors import TooManyRequests


class RateLimiter:
    """Token buckets keyed by client id: ``rate`` requests per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise 429 with the seconds to wait."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self.rate)
                self._buckets[key] = (tokens, now)
                raise TooManyRequests(
                    f"Too many requests from this client; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[key] = (tokens - 1.0, now)
