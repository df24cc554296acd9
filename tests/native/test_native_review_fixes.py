"""Two integrity holes in the native engine, against the scriptable stub (tests/http_stub.py).

* A 206 whose Content-Range total is unknown (``bytes 0-49/*``) and shorter than the range asked
  is a RangeMismatch, retried then raised, as in the Python backend. Only the first part of a
  split open-ended GET may end early (the object is smaller than a part).
* A split GET whose first reply has no ETag cannot pin its parts to one version with If-Match: it
  is read again in one request, so an object replaced meanwhile never gives a mixed body.
"""

from __future__ import annotations

import os

import pytest

from awsio import S3Client
from awsio.config import S3Config
from awsio.errors import IntegrityError

from .conftest import Reply, object_reply
from .test_native_parts import PART, make

pytestmark = pytest.mark.native

BODY = os.urandom(256)


def client(stub, backend: str, **kw) -> S3Client:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret", None))
    kw.setdefault("max_attempts", 2)
    return S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend, **kw))


# ---------------------------------------------------------------- Content-Range total "*"


def star_total_short(n, seen):
    return Reply(206, BODY[:50], {"Content-Range": "bytes 0-49/*", "ETag": '"e"'})


@pytest.mark.parametrize("many", [False, True], ids=["get_range", "get_many"])
def test_unknown_total_shorter_than_the_range_is_a_range_mismatch(stub, backend, many):
    stub.script = star_total_short
    c = client(stub, backend)
    with pytest.raises(IntegrityError) as info:
        if many:
            next(iter(c.get_many([("s3://bkt/obj", 0, 100)])))
        else:
            c.get_range("s3://bkt/obj", 0, 100)
    c.close()
    e = info.value
    assert e.code == "RangeMismatch"
    assert "s3://bkt/obj" in str(e)
    assert e.got == "bytes 0-49/*"
    assert len(stub.seen) == 2  # retried like any mismatched range


def test_unknown_total_exact_range_is_accepted(stub, backend):
    stub.script = lambda n, seen: Reply(206, BODY[10:60], {"Content-Range": "bytes 10-59/*", "ETag": '"e"'})
    c = client(stub, backend)
    assert c.get_range("s3://bkt/obj", 10, 60) == BODY[10:60]
    c.close()


def test_unknown_total_short_first_part_of_an_open_split_get_is_the_object(stub, backend):
    # A whole GET split into parts asks for its first part: an object smaller than that part may
    # end early even when the server does not say its size.
    def script(n, seen):
        if seen.headers.get("range") is None:
            return Reply(200, BODY[:50], {"ETag": '"e"'})
        return star_total_short(n, seen)

    stub.script = script
    c = client(stub, backend, part_size=PART)
    assert c.get("s3://bkt/obj") == BODY[:50]
    c.close()


def test_unknown_total_short_first_part_of_a_bounded_split_get_is_a_range_mismatch(stub, backend):
    stub.script = star_total_short
    c = client(stub, backend, part_size=PART)
    with pytest.raises(IntegrityError) as info:
        c.get_range("s3://bkt/obj", 0, 4 * PART)
    c.close()
    assert info.value.code == "RangeMismatch"
    assert "s3://bkt/obj" in str(info.value)


# ---------------------------------------------------------------- split GET without ETag


def no_etag(reply: Reply) -> Reply:
    reply.headers.pop("ETag", None)  # a gateway / proxy that drops it
    return reply


def test_split_get_without_etag_never_mixes_two_versions(stub):
    v1, v2 = b"A" * (4 * PART), b"B" * (4 * PART)
    stub.script = lambda n, seen: no_etag(object_reply(v1 if n == 0 else v2, seen))
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") in (v1, v2)
    # nothing to pin parts with: the first part's reply is dropped, the object read in one request
    assert [s.headers.get("range") for s in stub.seen] == [f"bytes=0-{PART - 1}", None]
    assert all("if-match" not in s.headers for s in stub.seen)
    b.close()


def test_split_range_without_etag_never_mixes_two_versions(stub):
    v1, v2 = os.urandom(6 * PART), os.urandom(6 * PART)
    stub.script = lambda n, seen: no_etag(object_reply(v1 if n == 0 else v2, seen))
    b = make(stub, part_size=PART)
    got = b.get("bkt", "k", 1000, 1000 + 4 * PART + 7)
    assert got in (v1[1000:1000 + 4 * PART + 7], v2[1000:1000 + 4 * PART + 7])
    assert [s.headers.get("range") for s in stub.seen] == [f"bytes=1000-{1000 + PART - 1}",
                                                           f"bytes=1000-{1000 + 4 * PART + 6}"]
    b.close()


def test_split_get_without_etag_keeps_its_retries(stub):
    # The request read again in one piece still gets max_attempts tries of its own.
    body = os.urandom(4 * PART)
    stub.script = lambda n, seen: no_etag(object_reply(body, seen, truncate_at=PART if n == 1 else None))
    b = make(stub, part_size=PART, max_attempts=2)
    assert b.get("bkt", "k") == body
    assert [s.headers.get("range") for s in stub.seen] == [f"bytes=0-{PART - 1}", None, None]
    b.close()


@pytest.mark.parametrize("etag", [True, False], ids=["etag", "no-etag"])
def test_split_get_gives_the_same_bytes_as_python(stub, backend, etag):
    body = os.urandom(5 * PART + 123)
    stub.script = lambda n, seen: object_reply(body, seen) if etag else no_etag(object_reply(body, seen))
    c = client(stub, backend, part_size=PART)
    assert c.get("s3://bkt/obj") == body
    assert c.get_range("s3://bkt/obj", 1000, 1000 + 4 * PART) == body[1000:1000 + 4 * PART]
    c.close()


def test_a_server_that_never_gives_the_size_still_gives_the_object(stub, backend):
    """A split GET whose full first part comes with ``Content-Range: .../*`` cannot know how many
    parts follow: it is read again in one request, as the Python backend reads it (the native
    engine raised EndpointConnectionError 'NoContentRange')."""
    body = os.urandom(4 * PART)

    def script(n, seen):
        r = object_reply(body, seen)
        if "Content-Range" in r.headers:
            r.headers["Content-Range"] = r.headers["Content-Range"].rsplit("/", 1)[0] + "/*"
        return r

    stub.script = script
    c = client(stub, backend, part_size=PART)
    assert c.get("s3://bkt/obj") == body
    c.close()
