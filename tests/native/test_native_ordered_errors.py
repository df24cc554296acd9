"""An ordered ``get_many`` raises a failed request's error at its turn, on both backends.

With ``ordered=True`` results come strictly in request order, and the error of a failed request
is raised exactly where its result would have been: after every earlier result was yielded with
its bytes, even when those earlier requests were still in flight when the later one failed.
The native backend used to raise request k's error as soon as it failed, losing the results of
the slower requests before it (the Python backend yielded them first).

Against the scriptable stub: a slow reply for the first request(s), an immediate
non-retryable failure (404 NoSuchKey, 403 AccessDenied) for a later one.
"""

from __future__ import annotations

import time

import pytest
from forking import stub_client
from http_stub import Reply, Seen, error_xml, object_reply

from awsio import S3Client
from awsio.errors import AccessDeniedError, NoSuchKeyError

SLOW = 0.6  # seconds the slow replies take: far longer than the failure's round trip


def body_of(name: str) -> bytes:
    return name.encode() * 5000


def _client(stub, backend: str, **kw) -> S3Client:
    kw.setdefault("max_connections", 8)
    return stub_client(stub, backend, max_attempts=3, **kw)


def _script(slow: dict[str, float], missing: set[str] = frozenset(), denied: set[str] = frozenset()):
    def script(n: int, seen: Seen) -> Reply:
        name = seen.path.rsplit("/", 1)[1]
        time.sleep(slow.get(name, 0.0))
        if name in missing:
            return Reply(404, error_xml("NoSuchKey", "The specified key does not exist."))
        if name in denied:
            return Reply(403, error_xml("AccessDenied", "Access Denied"))
        return object_reply(body_of(name), seen)
    return script


def _drain(it) -> tuple[list, BaseException | None]:
    got = []
    try:
        for item in it:
            got.append(item)
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return got, exc
    return got, None


@pytest.mark.parametrize("ramp", [False, True])
def test_a_failure_waits_for_the_slower_results_before_it(stub, backend, ramp):
    # o0 is slow, o1 fails at once (404), o2 is fast: o0 must come out whole, then o1's error.
    stub.script = _script({"o0": SLOW}, missing={"o1"})
    client = _client(stub, backend)
    urls = [f"s3://bkt/o{i}" for i in range(3)]
    got, err = _drain(client.get_many(urls, ordered=True, ramp=ramp))
    assert got == [("s3://bkt/o0", body_of("o0"))]
    assert isinstance(err, NoSuchKeyError), repr(err)
    assert err.url == "s3://bkt/o1"
    assert "s3://bkt/o1" in str(err)
    client.close()


def test_every_earlier_result_comes_first_in_request_order(stub, backend):
    # Five earlier requests finish in reverse order, all after o5 was denied: all five come out,
    # in request order, with their bytes; then o5's AccessDeniedError; nothing after it.
    slow = {f"o{i}": SLOW + 0.1 * (5 - i) for i in range(5)}
    stub.script = _script(slow, denied={"o5"})
    client = _client(stub, backend)
    urls = [f"s3://bkt/o{i}" for i in range(8)]
    got, err = _drain(client.get_many(urls, ordered=True))
    assert got == [(f"s3://bkt/o{i}", body_of(f"o{i}")) for i in range(5)]
    assert isinstance(err, AccessDeniedError), repr(err)
    assert err.url == "s3://bkt/o5"
    client.close()


def test_the_earliest_failure_is_the_one_raised(stub, backend):
    # o2 fails first (at once), o1 fails later (slow 404): o0, then o1's error (its turn comes
    # before o2's), never o2's.
    stub.script = _script({"o0": SLOW, "o1": SLOW / 2}, missing={"o1", "o2"})
    client = _client(stub, backend)
    got, err = _drain(client.get_many([f"s3://bkt/o{i}" for i in range(4)], ordered=True))
    assert got == [("s3://bkt/o0", body_of("o0"))]
    assert isinstance(err, NoSuchKeyError), repr(err)
    assert err.url == "s3://bkt/o1"
    client.close()


def test_an_invalid_range_is_raised_at_its_turn(stub, backend):
    # The second item's range is invalid: the first (slow) result still comes out first.
    stub.script = _script({"o0": SLOW})
    client = _client(stub, backend)
    got, err = _drain(client.get_many(["s3://bkt/o0", ("s3://bkt/o1", 10, 5), "s3://bkt/o2"], ordered=True))
    assert got == [("s3://bkt/o0", body_of("o0"))]
    assert isinstance(err, ValueError), repr(err)
    assert "s3://bkt/o1" in str(err)
    client.close()


def test_unordered_still_raises_the_failure_and_hands_out_only_whole_results(stub, backend):
    # Completion order: the failure ends the iteration; whatever came before it is whole.
    stub.script = _script({"o0": SLOW}, missing={"o1"})
    client = _client(stub, backend)
    got, err = _drain(client.get_many([f"s3://bkt/o{i}" for i in range(3)], ordered=False))
    assert isinstance(err, NoSuchKeyError), repr(err)
    assert err.url == "s3://bkt/o1"
    assert "s3://bkt/o0" not in dict(got)  # slower than the failure: not waited for
    for url, data in got:
        assert data == body_of(url.rsplit("/", 1)[1])
    client.close()


def test_after_an_ordered_failure_the_client_serves_the_next_call(stub, backend):
    # The transfers left after the error are cancelled: the next get_many gets whole results.
    stub.script = _script({"o0": SLOW, "o3": SLOW}, missing={"o1"})
    client = _client(stub, backend, max_connections=2)
    got, err = _drain(client.get_many([f"s3://bkt/o{i}" for i in range(4)], ordered=True))
    assert [u for u, _ in got] == ["s3://bkt/o0"] and isinstance(err, NoSuchKeyError)
    urls = [f"s3://bkt/o{i}" for i in (2, 3, 4, 5)]
    assert list(client.get_many(urls)) == [(u, body_of(u.rsplit("/", 1)[1])) for u in urls]
    client.close()
