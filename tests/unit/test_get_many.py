"""get_many's window on both backends: ``ramp=True`` starts with one request in flight and
doubles the window with each result taken (the first result is not slowed down by a full window
of other transfers, and little is fetched before it); without it the whole window goes out at
once. Ordered results stay in request order either way."""

from __future__ import annotations

import threading
import time

import pytest
from http_stub import Reply, Seen, object_reply

from awsio import S3Client
from awsio.config import S3Config

BODY = b"z" * 50_000


def _client(stub, backend: str) -> S3Client:
    return S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend,
                             static_credentials=("AKIDTEST", "secret", None), max_connections=8))


def _slow(n: int, seen: Seen) -> Reply:
    time.sleep(0.3)  # every reply takes a while: what went out before the first came back shows
    return object_reply(BODY + seen.path.encode(), seen)


@pytest.mark.parametrize("ramp", [False, True])
def test_the_window_at_the_first_result(stub, backend, ramp):
    stub.script = _slow
    client = _client(stub, backend)
    urls = [f"s3://bkt/o{i}" for i in range(20)]
    it = client.get_many(urls, ramp=ramp)
    url, data = next(it)
    sent_before_first = len(stub.seen)
    rest = list(it)
    assert [url] + [u for u, _ in rest] == urls
    assert [data] + [d for _, d in rest] == [BODY + f"/bkt/o{i}".encode() for i in range(20)]
    if ramp:
        assert sent_before_first <= 3, sent_before_first  # 1 in flight, then 2 once it was taken
    else:
        assert sent_before_first >= 6, sent_before_first  # the whole window (8), give or take one racing
    client.close()


def test_a_ramped_window_grows_to_max_connections(stub, backend):
    stub.script = _slow
    client = _client(stub, backend)
    t0 = time.monotonic()
    got = list(client.get_many((f"s3://bkt/o{i}" for i in range(40)), ramp=True))
    took = time.monotonic() - t0
    assert len(got) == 40
    # 1 + 2 + 4 + 8 + 8 + 8 + 8 + 1: about 8 rounds of 0.3 s; one at a time would take 12 s
    assert took < 6.0, took
    client.close()


def _ranged(n: int, seen: Seen) -> Reply:
    time.sleep(0.3)
    return object_reply(BODY, seen)


@pytest.mark.parametrize("ordered", [True, False])
def test_requests_out_and_not_taken_stay_within_max_inflight_bytes(stub, backend, ordered):
    """Known-size requests submitted and not yet taken by the caller add up to at most
    ``max_inflight_bytes`` (one larger request goes alone): memory stays bounded by bytes, not by
    ``max_connections x`` the request size."""
    stub.script = _ranged
    client = S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend,
                               static_credentials=("AKIDTEST", "secret", None), max_connections=8,
                               max_inflight_bytes=3 * 20_000))
    reqs = [(f"s3://bkt/o{i}", 0, 20_000, len(BODY)) for i in range(12)] + [(f"s3://bkt/big", 0, 40_000, len(BODY))] * 2
    it = client.get_many(reqs, ordered=ordered)
    first = next(it)
    time.sleep(0.5)  # what the reader does while the caller holds on to the rest
    sent = len(stub.seen)
    rest = list(it)
    assert sent <= 4, sent  # 3 out, then one more as the first was taken; 8 without the budget
    got = sorted([first] + rest)
    assert len(got) == 14 and all(d == BODY[:len(d)] and len(d) in (20_000, 40_000) for _, d in got)
    client.close()


def test_results_finished_together_count_until_each_is_taken(stub):
    """Unordered, the Python backend used to stop counting every result of one wait() at once, so
    while the caller held the first, the others (finished, not taken) were not counted and as many
    new requests went out: more bytes held than max_inflight_bytes."""
    client = S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend="python",
                               static_credentials=("AKIDTEST", "secret", None), max_connections=8,
                               max_inflight_bytes=3 * 20_000))
    for _ in range(5):  # one wait() does not always see all three finished: try a few times
        gate = threading.Barrier(3)
        base = len(stub.seen)

        def together(n: int, seen: Seen) -> Reply:
            if n - base < 3:
                gate.wait(timeout=5)  # the first three finish at the same moment
            return object_reply(BODY, seen)

        stub.script = together
        it = client.get_many([(f"s3://bkt/o{i}", 0, 20_000, len(BODY)) for i in range(9)], ordered=False)
        next(it)
        time.sleep(0.2)  # the caller holds on to the first; the two others are done and not taken
        assert len(stub.seen) - base <= 4, len(stub.seen) - base
        assert len(list(it)) == 8
    client.close()
