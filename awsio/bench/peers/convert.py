"""What the converting peers (litdata, mosaicml-streaming) share: where a converted copy lives,
whether an earlier run made it already, and the samples they convert.

A conversion is done once per data set: its output goes to ``s3://<bucket>/_converted/<peer>/<data
prefix>/`` and a marker (``..._done.json``, outside that folder) records how long it took; a later
run that finds the marker reuses the copy and reports the conversion as made earlier.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

from awsio.bench.engine import Conversion
from awsio.bench.peers.common import group_samples, split_url, tar_members

__all__ = ["converted", "source_samples"]


def converted(peer: str, manifest: Any, endpoint: Any, write: Callable[[str], None]) -> Conversion:
    """The conversion of ``manifest`` for ``peer``: reused, or made by ``write(output_url)`` now."""
    bucket = manifest.bucket
    folder = f"_converted/{peer}/{manifest.prefix.strip('/') or 'root'}"
    marker = f"{folder}_done.json"
    s3 = endpoint.boto3()
    try:
        done = json.loads(s3.get_object(Bucket=bucket, Key=marker)["Body"].read())
        return Conversion(done["url"], None, f"made by an earlier run in {done['seconds']:.1f} s")
    except s3.exceptions.NoSuchKey:
        pass
    url = f"s3://{bucket}/{folder}"
    t0 = time.perf_counter()
    write(url)
    seconds = time.perf_counter() - t0
    s3.put_object(Bucket=bucket, Key=marker, Body=json.dumps({"url": url, "seconds": seconds}).encode())
    return Conversion(url, seconds)


def source_samples(kind: str, url: str, client: Any) -> Iterator[dict[str, Any]]:
    """The samples of one source object, as the converted formats store them: ``{"name", "data"}``
    per tar member (``tar``), ``{"jpg", "cls"}`` per image (``images``), one per object (``objects``)."""
    bucket, key = split_url(url)
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    if kind == "objects":
        yield {"name": key, "data": body.read()}
    elif kind == "tar":
        for name, data in tar_members(body):
            yield {"name": name, "data": data}
    else:
        for s in group_samples(tar_members(body)):
            yield {"jpg": s["jpg"], "cls": int(s["cls"].decode())}
