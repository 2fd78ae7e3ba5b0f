"""Token buckets per key (client IP, principal), and lockout after repeated bad tokens.

Every class takes a ``clock`` (seconds, monotonic) so tests can move time without sleeping. The maps
are bounded: past ``max_keys`` the least recently seen key is forgotten, so many client addresses
cannot grow memory without limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class KeyedBuckets:
    """One token bucket per key: ``burst`` tokens at most, refilled at ``rate`` per second."""

    def __init__(
        self, rate: float, burst: int, *, clock: Clock = time.monotonic, max_keys: int = 65536
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when allowed, else the seconds until one is free."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else math.inf

    def give_back(self, key: str) -> None:
        """Return one token taken by :meth:`take` (the thing it paid for did not happen)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)


class Lockout:
    """Lock a key out for ``lock_s`` after ``failures`` failures within ``window_s`` seconds."""

    def __init__(
        self,
        failures: int,
        window_s: float,
        lock_s: float,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = 65536,
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.lock_s = lock_s
        self.clock = clock
        self.max_keys = max_keys
        self._failed: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()

    def locked_for(self, key: str) -> float:
        """Seconds ``key`` stays locked out (0.0 when it is not)."""
        until = self._locked.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked[key]
            return 0.0
        return left

    def fail(self, key: str) -> bool:
        """Count one failure of ``key``; True when this one locked it out."""
        now = self.clock()
        recent = [t for t in self._failed.pop(key, []) if now - t < self.window_s]
        recent.append(now)
        if len(recent) >= self.failures:
            self._locked[key] = now + self.lock_s
            self._locked.move_to_end(key)
            while len(self._locked) > self.max_keys:
                self._locked.popitem(last=False)
            return True
        self._failed[key] = recent
        while len(self._failed) > self.max_keys:
            self._failed.popitem(last=False)
        return False


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds)) if math.isfinite(seconds) else 3600
