"""Helpers of the tests that fork, or read through an S3Client on the HTTP stub."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from awsio import S3Client
from awsio.config import S3Config

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def stub_client(stub: Any, backend: str, **kw: Any) -> S3Client:
    """An S3Client of ``backend`` over the HTTP stub (static credentials; ``kw``: S3Config fields)."""
    return S3Client(S3Config(endpoint_url=stub.endpoint, backend=backend, region="us-east-1",
                             static_credentials=("AKIDTEST", "secret", None), **kw))


def in_child(fn: Any, timeout: float = 15.0) -> Any:
    """``fn()`` in a forked child: ("ok", value) or ("err", repr); "hung" if it never returns."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def run() -> None:
        try:
            queue.put(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            queue.put(("err", repr(exc)))

    child = ctx.Process(target=run)
    child.start()
    try:
        return queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty: the child never answered
        return ("hung", None)
    finally:
        child.kill()
        child.join()
