"""Rate limits: a token bucket (messages per second) and a sliding-window counter (attempts per
minute). Pure arithmetic over a clock value passed in, so they are tested without sleeping."""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindow", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens if there are enough and return 0; otherwise take nothing and return
        how many seconds to wait until there will be."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= n:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self.rate


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds (memory bounded by ``limit``)."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque(maxlen=limit)

    def allow(self, now: float) -> bool:
        """Record an event at ``now`` if it fits; return whether it did."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def idle(self, now: float) -> bool:
        """No event in the current window (the counter may be forgotten)."""
        return not self._times or self._times[-1] <= now - self.window
