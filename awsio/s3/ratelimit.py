"""Adaptive request pacing: throttling (503 SlowDown, 429) slows a client down instead of
turning into a retry storm.

The limiter is off until the first throttled reply. Then it paces every attempt (first tries and
retries alike) at a rate that was cut to ``BETA`` times the rate at which the throttling came
(the first time: the rate of successful replies just before, what the server let through),
climbs back to that rate linearly within ``RECOVER_S`` seconds, then probes above it by ``PROBE``
of it per second (additive increase) until the next throttled reply cuts it again
(multiplicative decrease). A throttled reply to a request paced before the last cut (at the old
rate, whenever it was sent) is the same congestion that cut answered, and cuts nothing. Once the rate has grown to ``RELEASE`` times the
last cut's without more throttling, pacing stops.

The native engine implements the same rule in C++ (``csrc/s3_core.cpp``, ``RateLimiter``) with
the same constants; :class:`RateLimiter` is the Python backend's.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Tuple

__all__ = ["BETA", "MIN_RATE", "PROBE", "RECOVER_S", "RELEASE", "RateLimiter"]

BETA = 0.7          # rate after a cut, as a fraction of the rate at the throttled reply
RECOVER_S = 1.0     # seconds to climb back to the rate at the throttled reply
PROBE = 0.05        # then growth per second, as a fraction of that rate
RELEASE = 4.0       # pacing stops at this multiple of that rate
MIN_RATE = 1.0      # requests per second, the floor
_WINDOW_S = 0.25    # the unpaced send rate is measured over two windows of this length


class _Window:
    """Events per second over the current and the previous window of ``_WINDOW_S``."""

    def __init__(self, now: float) -> None:
        self.start, self.count, self.prev = now, 0, 0

    def _roll(self, now: float) -> None:
        if now - self.start >= _WINDOW_S:
            self.prev = 0 if now - self.start >= 2 * _WINDOW_S else self.count
            self.start, self.count = now, 0

    def add(self, now: float) -> None:
        self._roll(now)
        self.count += 1

    def per_s(self, now: float) -> float:
        self._roll(now)
        span = now - self.start + (_WINDOW_S if self.prev else 0.0)
        return (self.count + self.prev) / max(span, 1e-3)


class RateLimiter:
    """Paces request attempts of one client; thread-safe. Times are ``time.monotonic()`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limited = False
        self._peak = 0.0       # the rate when the last cut happened
        self._cut_at = float("-inf")
        self._generation = 0   # cuts so far
        self._next_free = 0.0
        self._sent = _Window(clock())
        self._ok = _Window(clock())

    def _rate(self, now: float) -> float:
        dt = now - self._cut_at
        low = BETA * self._peak
        if dt < RECOVER_S:
            return max(MIN_RATE, low + (self._peak - low) * dt / RECOVER_S)
        return max(MIN_RATE, self._peak * (1.0 + PROBE * (dt - RECOVER_S)))

    @property
    def rate(self) -> Optional[float]:
        """The paced rate (requests per second) now, or None while not pacing."""
        with self._lock:
            return self._rate(self._clock()) if self._limited else None

    def reserve(self) -> Tuple[float, int]:
        """A slot for one attempt: the time it may be sent (now, unless pacing asks to wait), and
        the pacing generation to hand to :meth:`throttled` if its reply is throttled."""
        with self._lock:
            now = self._clock()
            if not self._limited:
                self._sent.add(now)
                return now, self._generation
            rate = self._rate(now)
            if rate >= RELEASE * self._peak:
                self._limited = False
                return now, self._generation
            self._next_free = max(self._next_free, now - 1.0 / rate)  # no saved-up burst
            when = self._next_free
            self._next_free += 1.0 / rate
            return when, self._generation

    def throttled(self, generation: int) -> None:
        """A throttled reply to an attempt paced in ``generation`` (from :meth:`reserve`)."""
        with self._lock:
            now = self._clock()
            if generation != self._generation:
                return
            if self._limited:
                current = self._rate(now)
            else:  # what the server let through, else what was sent
                current = self._ok.per_s(now) or self._sent.per_s(now)
            self._peak = max(MIN_RATE, current)
            self._cut_at = now
            self._generation += 1
            self._limited = True
            self._next_free = max(self._next_free, now)

    def succeeded(self) -> None:
        """A reply that was not throttled (measures what the server lets through)."""
        with self._lock:
            if not self._limited:
                self._ok.add(self._clock())
