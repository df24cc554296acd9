"""Reader benchmark: awsio native vs awsio Python vs boto3 threads vs s3torchconnector vs curl.

    python -m awsio.bench.reader [--small-count 2000 --small-size 102400] [--passes 3]
                                 [--large-count 16 --large-size 67108864] [--csv out.csv]

Starts its own local SeaweedFS (``awsio.testing.local_s3.LocalS3``) unless ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``) is set, uploads the objects once, then reads each set with every
reader in a fresh subprocess, so each gets its own CPU time and peak RSS. Prints objects/s,
MiB/s, client CPU seconds per GiB, peak RSS, and awsio native's ratio to every peer. Readers take
turns within each round; the table shows each reader's fastest round, and each target is checked
on the median of native's per-round ratios to that peer (the spread is printed beside it).
Credentials travel in the environment (and, for curl, in a ``-K`` config file), never in argv.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

MiB = 1 << 20
GiB = 1 << 30
# The goals: native's throughput ratio to each peer, per object set.
TARGETS = {
    "small": [("boto3-16", 3.0), ("s3torchconnector", 2.5), ("curl", 0.85)],
    "large": [("boto3-8", 1.3), ("curl", 0.85)],
}
METHODS = ("awsio-native", "awsio-python", "boto3-8", "boto3-16", "s3torchconnector", "curl")


def _keys(kind: str, count: int, size: int) -> list[str]:
    return [f"bench/{kind}-{size}/{i:05d}.bin" for i in range(count)]


def _env_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _boto3_client(threads: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=_env_endpoint(), region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(max_pool_connections=max(threads, 10), s3={"addressing_style": "path"},
                      retries={"max_attempts": 5, "mode": "standard"}),
    )


@contextlib.contextmanager
def local_server(data_dir: str | None = None) -> Iterator[None]:
    """A local SeaweedFS for the run (its ``AWS_*`` put in ``os.environ``), unless
    ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) names a server already."""
    if _env_endpoint():
        yield
        return
    from awsio.testing.local_s3 import LocalS3

    tmp = tempfile.mkdtemp(prefix="awsio-bench-")
    server = LocalS3(data_dir or tmp).start()
    os.environ.update(server.env())
    print(f"started local SeaweedFS at {server.endpoint}", flush=True)
    try:
        yield
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _upload(bucket: str, keys: list[str], size: int) -> None:
    client = _boto3_client(16)
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:  # already there
        if "BucketAlready" not in type(exc).__name__ and "BucketAlready" not in str(exc):
            raise
    try:
        if client.head_object(Bucket=bucket, Key=keys[-1])["ContentLength"] == size:
            return  # uploaded by an earlier run
    except Exception:
        pass
    payload = os.urandom(size)

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=payload)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


# ---------------------------------------------------------------- readers (run in a worker)

# Each factory sets a reader up (inside the timed first pass) and returns read(): one pass over
# the keys, returning the bytes read. Later passes reuse the same client, as a training job does.

def _read_awsio(backend_name: str, bucket: str, keys: list[str], connections: int) -> Callable[[], int]:
    from awsio.config import S3Config

    config = S3Config(max_connections=connections)
    if backend_name == "native":
        from awsio.s3.native_backend import NativeBackend

        backend: Any = NativeBackend(config)
    else:
        from awsio.s3.python_backend import PythonBackend

        backend = PythonBackend(config)

    def read() -> int:
        total = 0
        for _i, data in backend.get_many(((bucket, k, 0, None) for k in keys), ordered=False):
            total += len(data)
        return total

    return read


def _read_boto3(threads: int, bucket: str, keys: list[str], connections: int) -> Callable[[], int]:
    client = _boto3_client(threads)
    pool = ThreadPoolExecutor(threads)

    def get(key: str) -> int:
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    return lambda: sum(pool.map(get, keys))


def _read_s3torch(bucket: str, keys: list[str], connections: int) -> Callable[[], int]:
    from s3torchconnector import S3ClientConfig, S3IterableDataset

    dataset = S3IterableDataset.from_objects(
        [f"s3://{bucket}/{k}" for k in keys], region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint=_env_endpoint(), s3client_config=S3ClientConfig(force_path_style=True),
    )
    return lambda: sum(len(obj.read()) for obj in dataset)


def _read_curl(bucket: str, keys: list[str], connections: int) -> Callable[[], int]:
    endpoint = _env_endpoint() or f"https://s3.{os.environ.get('AWS_REGION', 'us-east-1')}.amazonaws.com"
    region = os.environ.get("AWS_REGION", "us-east-1")
    from urllib.parse import quote

    def read() -> int:  # a fresh curl process each pass: it keeps nothing between runs
        fd, path = tempfile.mkstemp(suffix=".curlrc")
        try:
            with os.fdopen(fd, "w") as f:
                # Credentials stay in this private file (mode 0600), never on the command line.
                f.write(f'user = "{os.environ["AWS_ACCESS_KEY_ID"]}:{os.environ["AWS_SECRET_ACCESS_KEY"]}"\n')
                f.write(f'aws-sigv4 = "aws:amz:{region}:s3"\n')
                f.write('header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n')
                for k in keys:
                    f.write(f'url = "{endpoint}/{bucket}/{quote(k)}"\noutput = "/dev/null"\n')
            proc = subprocess.run(
                ["curl", "--silent", "--show-error", "--fail", "--parallel", "--parallel-immediate",
                 "--parallel-max", str(connections), "-K", path, "--write-out", "%{size_download}\n"],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"curl failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
            return sum(int(x) for x in proc.stdout.split())
        finally:
            os.unlink(path)

    return read


def _reader(method: str) -> Callable[[str, list[str], int], Callable[[], int]]:
    if method == "awsio-native":
        return lambda b, k, c: _read_awsio("native", b, k, c)
    if method == "awsio-python":
        return lambda b, k, c: _read_awsio("python", b, k, c)
    if method.startswith("boto3-"):
        threads = int(method.split("-")[1])
        return lambda b, k, c: _read_boto3(threads, b, k, c)
    if method == "s3torchconnector":
        return _read_s3torch
    if method == "curl":
        return _read_curl
    raise ValueError(f"unknown method {method}")


def _vm_hwm_mib() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_memory(nbytes: int) -> None:
    """Touch and free ``nbytes`` so no reader pays the VM's first-touch cost alone, then reset
    the peak-RSS mark. On some VMs the first write to fresh memory costs ~2 s/GiB of system
    time; whichever reader ran first after an idle spell would otherwise be penalised."""
    chunk = 64 * MiB
    bufs = []
    for _ in range(max(1, nbytes // chunk)):
        b = bytearray(chunk)
        b[::4096] = b"\1" * (chunk // 4096)
        bufs.append(b)
    del bufs, b
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    keys = _keys(spec["kind"], spec["count"], spec["size"])
    read = _reader(spec["method"])
    if spec["method"] != "curl":  # curl writes to /dev/null; keep its peak RSS its own
        _warm_memory(min(spec["count"], spec["connections"]) * spec["size"] + 64 * MiB)
    rss0 = _vm_hwm_mib()
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    read_pass = read(spec["bucket"], keys, spec["connections"])  # set-up counts in the first pass
    total = read_pass()
    wall = time.perf_counter() - t0
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
           + c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
    # curl: its own peak (ru_maxrss of children is the larger of curl's and ours at fork).
    rss = c1.ru_maxrss / 1024 if spec["method"] == "curl" else _vm_hwm_mib()
    expected = spec["count"] * spec["size"]
    if total != expected:
        raise RuntimeError(f"{spec['method']} read {total} bytes, expected {expected}")
    warm = []  # later passes, same client: the steady state of a long job
    for _ in range(spec.get("passes", 1) - 1):
        t1 = time.perf_counter()
        if read_pass() != expected:
            raise RuntimeError(f"{spec['method']} read the wrong number of bytes on a later pass")
        warm.append(time.perf_counter() - t1)
    return {"method": spec["method"], "set": spec["kind"], "objects": spec["count"], "bytes": total,
            "wall_s": wall, "warm_wall_s": min(warm) if warm else None, "cpu_s": cpu,
            "peak_rss_mib": rss, "base_rss_mib": rss0,
            "inflight_mib": _inflight_bytes(spec) / MiB}


def _inflight_bytes(spec: dict[str, Any]) -> int:
    """Bytes a reader may hold at once: a window of whole bodies; for awsio native at most its
    in-flight budget (one body if larger) plus the result in the caller's hands."""
    window = min(spec["count"], spec["connections"]) * spec["size"]
    if spec["method"] != "awsio-native":
        return window
    from awsio.config import S3Config

    budget = S3Config(max_connections=spec["connections"]).max_inflight_bytes or 0
    return min(window, max(budget, spec["size"]) + spec["size"])


def _run_worker(spec: dict[str, Any], malloc_reuse: bool = False) -> dict[str, Any] | None:
    env = dict(os.environ)
    if malloc_reuse:
        # glibc keeps freed memory for reuse instead of unmapping it (every reader alike): what a
        # long-running loader sees once warm, without the kernel zeroing fresh pages per object.
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    proc = subprocess.run([sys.executable, "-m", "awsio.bench.reader", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {spec['method']:<17} {spec['kind']:<5} FAILED: {tail[:200]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _available(method: str) -> bool:
    if method == "s3torchconnector":
        try:
            import s3torchconnector  # noqa: F401
        except Exception:
            return False
    if method == "curl":
        return shutil.which("curl") is not None
    if method == "awsio-native":
        from awsio.s3.native_backend import native_available

        return native_available()
    return True


def _paired_ratios(native: list[dict[str, Any] | None] | None, peer: list[dict[str, Any] | None] | None,
                   key: str) -> list[float]:
    """Native's throughput ratio to a peer in each round where both ran (the two ran back to back,
    so they share the machine's state at that moment; their median is steadier than a ratio of
    two independent best-ofs on a noisy VM)."""
    out = []
    for a, b in zip(native or [], peer or []):
        if a and b and a.get(key) and b.get(key):
            out.append(b[key] / a[key])  # same bytes: throughput ratio = inverse wall ratio
    return out


def _print_table(rows: list[dict[str, Any]]) -> None:
    for kind in ("small", "large"):
        group = [r for r in rows if r["set"] == kind]
        if not group:
            continue
        r0 = group[0]
        print(f"\n{kind}: {r0['objects']} objects x {r0['bytes'] // r0['objects'] / 1024:.0f} KiB")
        warm = all(r.get("warm_mib_s") for r in group)
        print(f"  {'reader':<17} {'objects/s':>10} {'MiB/s':>9} {'CPU s/GiB':>10} {'peak RSS MiB':>13}"
              f" {'native x':>9}" + (f" {'warm MiB/s':>11} {'warm x':>7}" if warm else ""))
        native = next((r for r in group if r["method"] == "awsio-native"), None)
        for r in group:
            ratio = f"{native['mib_s'] / r['mib_s']:.2f}" if native else "-"
            line = (f"  {r['method']:<17} {r['objects_s']:>10.1f} {r['mib_s']:>9.1f} {r['cpu_s_per_gib']:>10.2f}"
                    f" {r['peak_rss_mib']:>13.1f} {ratio:>9}")
            if warm:
                wratio = f"{native['warm_mib_s'] / r['warm_mib_s']:.2f}" if native else "-"
                line += f" {r['warm_mib_s']:>11.1f} {wratio:>7}"
            print(line)
        if native is None:
            continue
        by = {r["method"]: r for r in group}
        for peer, goal in TARGETS[kind]:
            if peer not in by:
                continue
            first = _paired_ratios(native.get("rounds"), by[peer].get("rounds"), "wall_s")
            if not first:  # no round where both ran: fall back on the fastest of each
                first = [native["mib_s"] / by[peer]["mib_s"]]
            got = statistics.median(first)
            spread = f" over {len(first)} rounds ({min(first):.2f}-{max(first):.2f})" if len(first) > 1 else ""
            line = f"  target native/{peer} >= {goal}: {got:.3f}{spread} {'met' if got >= goal else 'MISSED'}"
            later = _paired_ratios(native.get("rounds"), by[peer].get("rounds"), "warm_wall_s")
            if later:
                line += f" (warm passes: {statistics.median(later):.2f})"
            print(line)
        limit = native["inflight_mib"] + 100
        print(f"  target native peak RSS <= in-flight {native['inflight_mib']:.0f} MiB + 100 MiB: "
              f"{native['peak_rss_mib']:.0f} MiB {'met' if native['peak_rss_mib'] <= limit else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--small-size", type=int, default=100 * 1024)
    parser.add_argument("--large-count", type=int, default=16)
    parser.add_argument("--large-size", type=int, default=64 * MiB)
    parser.add_argument("--connections", type=int, default=32, help="max connections / in-flight requests")
    parser.add_argument("--bucket", default="awsio-bench")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--rounds", type=int, default=5,
                        help="repeat each measurement (readers interleaved per round); the table keeps each "
                             "reader's fastest, the targets use the median of the per-round ratios")
    parser.add_argument("--passes", type=int, default=1,
                        help="read each set this many times per reader process; passes after the first "
                             "(same client, warm) are reported as the steady state")
    parser.add_argument("--malloc-reuse", action="store_true",
                        help="run every reader with glibc keeping freed memory (MALLOC_MMAP_MAX_=0)")
    parser.add_argument("--csv", help="also write the figures to this CSV file")
    parser.add_argument("--data-dir", help="LocalS3 data folder (default: a temporary one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    with local_server(args.data_dir):
        sets = [("small", args.small_count, args.small_size), ("large", args.large_count, args.large_size)]
        for kind, count, size in sets:
            if count:
                t0 = time.perf_counter()
                _upload(args.bucket, _keys(kind, count, size), size)
                print(f"objects ready: {count} x {size} B ({time.perf_counter() - t0:.1f} s)", flush=True)
        methods = [m for m in args.methods.split(",") if m]
        for m in methods:
            if m not in METHODS:
                parser.error(f"unknown method {m!r}")
        skipped = [m for m in methods if not _available(m)]
        if skipped:
            print(f"not available, skipped: {', '.join(skipped)}")
        if "awsio-native" in methods and "awsio-native" not in skipped:
            from awsio.config import S3Config

            cfg = S3Config(max_connections=args.connections)
            budget, part, pool = (cfg.max_inflight_bytes or 0), (cfg.part_size or 0), (cfg.buffer_pool_bytes or 0)
            print(f"awsio native: max_inflight_bytes {budget / MiB:.0f} MiB, part_size {part / MiB:.0f} MiB"
                  f"{' (one request per object)' if not part else ''}, buffer pool {pool / MiB:.0f} MiB",
                  flush=True)
        rows: list[dict[str, Any]] = []
        for kind, count, size in sets:
            if not count:
                continue
            best: dict[str, dict[str, Any]] = {}
            warm_best: dict[str, float] = {}
            per_round: dict[str, list[dict[str, Any] | None]] = {m: [] for m in methods}
            for _round in range(args.rounds):
                # Interleave readers per round so that drift in machine load hits all of them, in
                # reverse order every other round so that no reader always follows the same one.
                for m in (methods if _round % 2 == 0 else methods[::-1]):
                    if m in skipped:
                        continue
                    spec = {"method": m, "kind": kind, "count": count, "size": size,
                            "bucket": args.bucket, "connections": args.connections, "passes": args.passes}
                    res = _run_worker(spec, args.malloc_reuse)
                    per_round[m].append(res)
                    if res and res["warm_wall_s"] is not None:
                        warm_best[m] = min(warm_best.get(m, res["warm_wall_s"]), res["warm_wall_s"])
                    if res and (m not in best or res["wall_s"] < best[m]["wall_s"]):
                        best[m] = res
            for m in methods:
                if m in best:
                    r = best[m]
                    r["objects_s"] = r["objects"] / r["wall_s"]
                    r["mib_s"] = r["bytes"] / MiB / r["wall_s"]
                    r["cpu_s_per_gib"] = r["cpu_s"] / (r["bytes"] / GiB)
                    r["warm_mib_s"] = r["bytes"] / MiB / warm_best[m] if m in warm_best else None
                    r["rounds"] = per_round[m]
                    rows.append(r)
        _print_table(rows)
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                fields = ["set", "method", "objects", "bytes", "wall_s", "objects_s", "mib_s", "warm_mib_s", "cpu_s",
                          "cpu_s_per_gib", "peak_rss_mib", "base_rss_mib"]
                w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
