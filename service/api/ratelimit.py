"""Per-caller rate limits: a token bucket per identity, refused with 429 and Retry-After.

The buckets live in the worker's memory, so with N gunicorn workers a caller may get up to N
times RATE_LIMIT_PER_MINUTE (set it to the wanted limit divided by WORKERS). A shared counter
in the ledger database would make every request a write — on SQLite a write that serialises
all workers — to enforce what is an abuse guard, not a billing quota; a proxy in front
(nginx ``limit_req``, a load balancer) is the place for an exact, cluster-wide limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.api.errors import ApiError

# Forget idle callers beyond this many buckets, so memory stays bounded.
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` requests per identity, in bursts of up to ``per_minute``; 0 turns it off."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """False when RATE_LIMIT_PER_MINUTE is 0."""
        return self.capacity > 0

    def wait_seconds(self, identity: str) -> float:
        """Take one request for ``identity``: 0 when allowed, else seconds until it would be."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(identity)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                bucket = self._buckets[identity] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def check(self, identity: str) -> None:
        """Raise ApiError 429 with Retry-After when ``identity`` is over its limit."""
        wait = self.wait_seconds(identity)
        if wait > 0:
            # Retry-After is whole seconds (RFC 9110); round up so a retry then succeeds.
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too many requests: the limit is {int(self.capacity)} a minute. "
                f"Retry in {seconds} s.",
                details={"limit_per_minute": int(self.capacity), "retry_after": seconds},
                headers={"Retry-After": str(seconds)},
            )

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely carries no state worth keeping.
        full_after = self.capacity / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: drop the longest idle half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[
                : MAX_BUCKETS // 2
            ]:
                del self._buckets[key]
