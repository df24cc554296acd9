"""What checking S3 checksums costs the native reader: the same objects read with and without.

    python -m awsio.bench.checksums [--algorithm crc64nvme] [--count 8 --size 67108864] [--rounds 5]

Uploads ``count`` objects of ``size`` bytes with ``--algorithm`` to a local SeaweedFS (or
``AWS_ENDPOINT_URL``), which stores the checksum and sends it back to a GET that asks. Two
native clients then read them with one plain GET per object (``part_size=0``: S3 sends no
checksum for ranged GETs): one checks every body (the default), one does not
(``verify_checksums=False``); the objects, the server and the requests are the same.
They take turns within each round (reversed every other round). Prints MiB/s (fastest round) and
client CPU s/GiB (median) of each, the median of the per-round throughput ratios (checked /
unchecked) and the CPU s/GiB the check adds; and each checksum's own speed on data in memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MiB = 1 << 20
GiB = 1 << 30
ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


def _client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        # No checksum unless asked for: the plain set must carry none.
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
    )


def _upload(bucket: str, count: int, size: int, algorithm: str) -> list[str]:
    """Keys of ``count`` objects stored with an ``algorithm`` checksum (uploaded unless there)."""
    client = _client()
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:  # already there
        if "BucketAlready" not in type(exc).__name__ and "BucketAlready" not in str(exc):
            raise
    payload = os.urandom(size)
    keys = [f"checksums/{algorithm}-{size}/{i:04d}.bin" for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=payload,
                                                  ChecksumAlgorithm=algorithm.upper()), keys))
    headers = client.get_object(Bucket=bucket, Key=keys[0], ChecksumMode="ENABLED")["ResponseMetadata"]["HTTPHeaders"]
    if f"x-amz-checksum-{algorithm}" not in headers:  # nothing would be checked: nothing to measure
        raise RuntimeError(f"the server does not send x-amz-checksum-{algorithm} back")
    return keys


def _native_client(connections: int, verify: bool) -> Any:
    """A native client as NativeBackend makes one (S3Config's defaults), one GET per object."""
    from awsio import _native
    from awsio.config import S3Config, credentials_provider
    from awsio.s3.native_backend import native_client

    c = S3Config(max_connections=connections, part_size=0, verify_checksums=verify)
    client = native_client(c, pool=_native.BufferPool(c.buffer_pool_bytes), deadline=60.0)
    creds = credentials_provider(c)()
    if creds is not None:
        client.set_credentials(creds.access_key, creds.secret_key, creds.token or "")
    return client


def _read_pass(client: Any, bucket: str, keys: list[str], size: int) -> tuple[float, float]:
    """One pass over ``keys``, all submitted at once: (wall seconds, CPU seconds of this process)."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        client.submit(i, bucket, key, 0, -1, False, size)
    total = done = 0
    while done < len(keys):
        for r in client.wait(1.0):
            if r.kind != "ok":
                raise RuntimeError(f"GET failed: {r.kind} {r.status} {r.code} {r.reason}")
            total += len(r.data)
            done += 1
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if total != len(keys) * size:
        raise RuntimeError(f"read {total} bytes, expected {len(keys) * size}")
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def _compute_speed(nbytes: int) -> dict[str, float]:
    """GiB/s of each checksum over ``nbytes`` in memory (one core)."""
    from awsio import _native

    data = os.urandom(nbytes)
    out = {}
    for algorithm in _native.checksum_algorithms():
        t0 = time.process_time()
        _native.checksum(algorithm, data, 256 * 1024)  # in libcurl-sized pieces, as a body arrives
        out[algorithm] = nbytes / GiB / max(time.process_time() - t0, 1e-9)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="crc64nvme")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=64 * MiB)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--bucket", default="awsio-bench-checksums")
    args = parser.parse_args(argv)

    from awsio.bench.endpoint import open_endpoint

    with open_endpoint() as ep:
        os.environ.update(ep.env)  # the endpoint and credentials the clients below read
        if ep.url:
            os.environ["AWS_ENDPOINT_URL"] = ep.url
        os.environ.setdefault("AWS_REGION", ep.region)
        keys = _upload(args.bucket, args.count, args.size, args.algorithm)
        clients = {"unchecked": _native_client(args.connections, False),
                   args.algorithm: _native_client(args.connections, True)}
        for client in clients.values():  # warm: connections, buffer pool, server caches
            _read_pass(client, args.bucket, keys, args.size)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for r in range(args.rounds):
            for name in (list(clients) if r % 2 == 0 else list(clients)[::-1]):
                runs[name].append(_read_pass(clients[name], args.bucket, keys, args.size))
        gib = args.count * args.size / GiB
        print(f"{args.count} x {args.size / MiB:.0f} MiB, {args.rounds} rounds, one GET per object, "
              f"{args.connections} connections, {os.cpu_count()} cores")
        print(f"{'set':<12} {'MiB/s':>8} {'CPU s/GiB':>10}   (fastest round; CPU: median)")
        for name, rs in runs.items():
            fastest = min(w for w, _ in rs)
            print(f"{name:<12} {gib * 1024 / fastest:>8.0f} {statistics.median(c for _, c in rs) / gib:>10.3f}")
        plain, checked = runs["unchecked"], runs[args.algorithm]
        ratios = sorted(p[0] / c[0] for p, c in zip(plain, checked))  # throughput checked / unchecked
        extra = statistics.median((c[1] - p[1]) / gib for p, c in zip(plain, checked))
        print(f"throughput {args.algorithm} / unchecked: median {statistics.median(ratios):.3f} "
              f"(rounds {ratios[0]:.3f}..{ratios[-1]:.3f}); CPU added: {extra:+.3f} s/GiB")
        speeds = _compute_speed(256 * MiB)
        print("checksum alone, in memory: " + ", ".join(f"{a} {s:.2f} GiB/s ({1 / s:.3f} CPU s/GiB)"
                                                          for a, s in speeds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
