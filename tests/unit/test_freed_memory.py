"""Freed memory stays in the process once awsio reads (glibc's malloc), so that the next sample's
bytes are not fresh pages the kernel must fault in and zero (see awsio.memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.environ.get("LD_PRELOAD"),
                                reason="glibc's malloc on Linux")

# Batches of 64 samples of 100 KiB, cut out of a larger body and dropped, as a pipeline does;
# the page faults of the last of 20 rounds, before and after a backend is made.
_CHILD = r"""
import json, resource, sys
from awsio import S3Client
from awsio.config import S3Config

body = bytes(8 << 20)

def faults():
    for _ in range(20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        batch = [body[i * 102400:(i + 1) * 102400] for i in range(64)]
        del batch
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
client = S3Client(S3Config(endpoint_url="http://127.0.0.1:9", region="us-east-1",
                           static_credentials=("ak", "sk", None), backend=sys.argv[1]))
client.backend  # the backend is made on first use in this process
print(json.dumps({"before": first, "after": faults()}))
"""


def _faults(backend: str, **env: str) -> dict[str, int]:
    if backend == "native":
        pytest.importorskip("awsio._native")
    out = subprocess.run([sys.executable, "-c", _CHILD, backend], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["python", "native"])
def test_freed_sample_memory_is_reused_without_page_faults(backend: str) -> None:
    got = _faults(backend)
    assert got["before"] > 1000, got  # glibc's defaults hand a dropped batch back to the kernel
    assert got["after"] < 100, got


def test_keep_freed_memory_off_leaves_glibc_defaults() -> None:
    got = _faults("python", AWSIO_KEEP_FREED_MEMORY="0")
    assert got["after"] > 1000, got
