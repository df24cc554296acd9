"""curl as the ceiling of raw object reads: one ``curl --parallel --parallel-immediate
--parallel-max <connections>`` process per pass, SigV4-signed by curl itself (``--aws-sigv4``),
bodies written to ``/dev/null`` (so it never pays for memory the others have to fill).
Credentials go into a private ``-K`` config file (mode 0600), never onto the command line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import TYPE_CHECKING, Iterable, Iterator
from urllib.parse import quote

from awsio.bench.peers.common import split_url

if TYPE_CHECKING:
    from awsio.bench.engine import Job


class _Curl:
    def __init__(self, job: Job) -> None:
        self.job = job

    def __iter__(self) -> Iterator[int]:
        job = self.job
        endpoint = job.endpoint or f"https://s3.{job.region}.amazonaws.com"
        fd, path = tempfile.mkstemp(suffix=".curlrc")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f'user = "{os.environ["AWS_ACCESS_KEY_ID"]}:{os.environ["AWS_SECRET_ACCESS_KEY"]}"\n')
                f.write(f'aws-sigv4 = "aws:amz:{job.region}:s3"\n')
                f.write('header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n')
                for url in job.urls:
                    bucket, key = split_url(url)
                    f.write(f'url = "{endpoint}/{bucket}/{quote(key)}"\noutput = "/dev/null"\n')
            proc = subprocess.run(
                ["curl", "--silent", "--show-error", "--fail", "--parallel", "--parallel-immediate",
                 "--parallel-max", str(job.connections), "-K", path, "--write-out", "%{size_download}\n"],
                capture_output=True, text=True, check=False)
        finally:
            os.unlink(path)
        if proc.returncode != 0:
            raise RuntimeError(f"curl failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
        for size in proc.stdout.split():
            yield int(size)


def make(job: Job) -> Iterable[int]:
    return _Curl(job)
