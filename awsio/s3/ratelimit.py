"""Adaptive request pacing: throttling (503 SlowDown, 429) slows a client down instead of
turning into a retry storm.

The limiter is off until the first throttled reply. Then it paces every attempt (first tries and
retries alike) at a rate that was cut to ``BETA`` times the rate at which the throttling came,
climbs back to that rate linearly within ``RECOVER_S`` seconds, then probes above it by ``PROBE``
of it per second (additive increase) until the next throttled reply cuts it again
(multiplicative decrease). A throttled reply to a request sent before the last cut is the same
congestion that cut answered, and cuts nothing. Once the rate has grown to ``RELEASE`` times the
last cut's without more throttling, pacing stops.

The native engine implements the same rule in C++ (``csrc/s3_core.cpp``, ``RateLimiter``) with
the same constants; :class:`RateLimiter` is the Python backend's.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

__all__ = ["BETA", "MIN_RATE", "PROBE", "RECOVER_S", "RELEASE", "RateLimiter"]

BETA = 0.7          # rate after a cut, as a fraction of the rate at the throttled reply
RECOVER_S = 1.0     # seconds to climb back to the rate at the throttled reply
PROBE = 0.05        # then growth per second, as a fraction of that rate
RELEASE = 4.0       # pacing stops at this multiple of that rate
MIN_RATE = 1.0      # requests per second, the floor
_WINDOW_S = 0.25    # the unpaced send rate is measured over two windows of this length


class RateLimiter:
    """Paces request attempts of one client; thread-safe. Times are ``time.monotonic()`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limited = False
        self._peak = 0.0       # the rate when the last cut happened
        self._cut_at = float("-inf")
        self._next_free = 0.0
        self._win_start = clock()
        self._win_count = 0
        self._prev_count = 0

    def _rate(self, now: float) -> float:
        dt = now - self._cut_at
        low = BETA * self._peak
        if dt < RECOVER_S:
            return max(MIN_RATE, low + (self._peak - low) * dt / RECOVER_S)
        return max(MIN_RATE, self._peak * (1.0 + PROBE * (dt - RECOVER_S)))

    def _measured(self, now: float) -> float:
        span = now - self._win_start + (_WINDOW_S if self._prev_count else 0.0)
        return (self._win_count + self._prev_count) / max(span, 1e-3)

    @property
    def rate(self) -> Optional[float]:
        """The paced rate (requests per second) now, or None while not pacing."""
        with self._lock:
            return self._rate(self._clock()) if self._limited else None

    def reserve(self) -> float:
        """A slot for one attempt: the time it may be sent (now, unless pacing asks to wait)."""
        with self._lock:
            now = self._clock()
            if not self._limited:
                if now - self._win_start >= _WINDOW_S:
                    fresh = now - self._win_start >= 2 * _WINDOW_S
                    self._prev_count = 0 if fresh else self._win_count
                    self._win_start, self._win_count = now, 0
                self._win_count += 1
                return now
            rate = self._rate(now)
            if rate >= RELEASE * self._peak:
                self._limited = False
                return now
            self._next_free = max(self._next_free, now - 1.0 / rate)  # no saved-up burst
            when = self._next_free
            self._next_free += 1.0 / rate
            return when

    def throttled(self, sent_at: float) -> None:
        """A throttled reply to an attempt sent at ``sent_at`` (from :meth:`reserve`)."""
        with self._lock:
            now = self._clock()
            if sent_at < self._cut_at:
                return
            current = self._rate(now) if self._limited else self._measured(now)
            self._peak = max(MIN_RATE, current)
            self._cut_at = now
            self._limited = True
            self._next_free = max(self._next_free, now)
