"""Adaptive back-off: a server that answers 503 SlowDown above a request rate slows the client
down to that rate instead of turning throttling into a retry storm (both backends)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from http_stub import Reply, Seen, error_xml, object_reply

from awsio import S3Client
from awsio.config import S3Config
from awsio.s3.ratelimit import BETA, RECOVER_S, RateLimiter

log = logging.getLogger(__name__)

BODY = b"x" * 1000


class Throttle:
    """A token bucket of ``rate`` requests per second (``burst`` saved up at most): a request
    without a token gets 503 SlowDown, as S3 answers above a prefix's request rate."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.ok = self.throttled = 0

    def __call__(self, n: int, seen: Seen) -> Reply:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                self.throttled += 1
                return Reply(503, error_xml("SlowDown", "Please reduce your request rate."))
            self.tokens -= 1
            self.ok += 1
        return object_reply(BODY, seen)


def test_throttling_slows_the_client_to_the_allowed_rate(stub, backend):
    rate, n = 40.0, 240
    throttle = Throttle(rate, burst=8)
    stub.script = throttle
    client = S3Client(S3Config(endpoint_url=stub.endpoint, backend=backend, max_connections=16, max_attempts=5,
                               static_credentials=("AKID", "secret", None)))
    urls = [f"s3://bkt/o{i}" for i in range(n)]
    t0 = time.monotonic()
    got = [data for _, data in client.get_many(urls)]  # raises if any request failed for good
    elapsed = time.monotonic() - t0
    assert got == [BODY] * n
    m = client.metrics()
    achieved = n / elapsed
    log.warning("%s: %d GETs in %.2f s = %.1f/s (allowed %.0f/s, %.0f %%), %d throttled replies, "
                "%d requests", backend, n, elapsed, achieved, rate, 100 * achieved / rate, throttle.throttled,
                m["get_requests"])
    assert m["errors"] == 0 and m["retries_throttle"] == throttle.throttled
    # Measured 97-98 % of the allowed rate on both backends (see the report of issue 16);
    # generous bounds for a loaded test machine. Without pacing (throttled() a no-op) the Python
    # backend failed with ThrottledError after 12 objects: 16 requests in flight retried with
    # ~50 ms backoff run out of attempts.
    assert 0.7 * rate <= achieved <= 1.15 * rate
    assert throttle.throttled < 0.5 * n


def test_the_limiter_cuts_once_per_congestion_and_ramps_back():
    now = [100.0]
    lim = RateLimiter(clock=lambda: now[0])
    assert lim.rate is None and lim.reserve() == (100.0, 0)  # no pacing before any throttling
    for _ in range(99):
        lim.reserve()
    now[0] += 0.2
    _, generation = lim.reserve()
    lim.throttled(generation)
    peak = lim.rate / BETA
    assert 300 < peak < 700  # the unpaced send rate it measured (100 requests in 0.2 s)
    lim.throttled(generation)  # the same congestion (paced before the cut): no second cut
    assert lim.rate == pytest.approx(BETA * peak)
    slots = [lim.reserve()[0] for _ in range(10)]
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert all(g == pytest.approx(1 / (BETA * peak)) for g in gaps)  # paced, no burst
    now[0] += RECOVER_S
    assert lim.rate == pytest.approx(peak)  # linear climb back within RECOVER_S
    now[0] += 10
    assert lim.rate == pytest.approx(peak * 1.5)  # then additive probing, 5 % of the peak per second


def test_the_first_cut_starts_from_what_the_server_let_through():
    now = [100.0]
    lim = RateLimiter(clock=lambda: now[0])
    for _ in range(100):  # 100 sent in 0.2 s, 10 of them answered without throttling
        lim.reserve()
    for _ in range(10):
        lim.succeeded()
    now[0] += 0.2
    lim.throttled(lim.reserve()[1])
    assert lim.rate == pytest.approx(BETA * 10 / 0.2)
