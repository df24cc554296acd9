"""The native reader under faults that could hand out wrong bytes: every reply is checked.

Against the scriptable stub (tests/native/conftest.py): short bodies, a 206 for another range,
replies that contradict the known object size, servers that ignore Range, wrong checksums. Each
is retried (``max_attempts`` in all), then raised as a typed error; nothing wrong is returned.
"""

from __future__ import annotations

import os

import pytest


from .conftest import make_backend as make
from .conftest import object_reply

pytestmark = pytest.mark.native

PART = 64 * 1024


# ---------------------------------------------------------------- split GETs


def test_first_part_cut_short_and_retried_gives_every_object_whole(stub):
    # The first part of each split GET is cut mid-body once: it must be retried cleanly (it used
    # to stay queued for its parts with its body released, and came back as b"" without an error).
    objs = {f"o{i}": os.urandom(5 * PART + 17 * i) for i in range(20)}
    cut: set[str] = set()

    def script(n, seen):
        name = seen.path.rsplit("/", 1)[1]
        if seen.headers.get("range", "").startswith("bytes=0-") and name not in cut:
            cut.add(name)
            return object_reply(objs[name], seen, truncate_at=PART // 2)
        return object_reply(objs[name], seen)

    stub.script = script
    b = make(stub, part_size=PART, max_connections=8)
    got = [d for _i, d in b.get_many([("bkt", k, 0, None) for k in objs])]
    assert [len(d) for d in got] == [len(v) for v in objs.values()]
    assert got == list(objs.values())
    assert cut == set(objs)
    b.close()


def test_retried_first_part_is_pinned_to_the_etag_its_parts_use(stub):
    # The first part fails after its parts went out: its retry asks for the same version
    # (If-Match), so a replaced object fails with 412 instead of mixing two versions' bytes.
    body = os.urandom(6 * PART)
    first_tries: list[dict[str, str]] = []

    def script(n, seen):
        if seen.headers.get("range", "").startswith("bytes=0-"):
            first_tries.append(seen.headers)
            if len(first_tries) == 1:
                return object_reply(body, seen, truncate_at=PART // 2, chunk_delay=0.2)
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") == body
    assert len(first_tries) == 2
    assert "if-match" not in first_tries[0] and first_tries[1]["if-match"] == '"e1"'
    b.close()
