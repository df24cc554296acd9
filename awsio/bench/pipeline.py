"""Benchmark of the pipeline: ``python -m awsio.bench.pipeline [--quick] [options]``.

Is reading the bottleneck? On a local SeaweedFS (started here, unless ``AWS_ENDPOINT_URL`` or
``--endpoint`` names one; its ``--bucket`` must exist), it writes N tar shards of (JPEG, class) samples, then measures
samples/s of

* ``s3``: the full pipeline ``S3IterableDataset(shards).dataproc(batch_size=B, shuffle=False)
  .decode("pil").transform_fn(image=resize_to_tensor)`` (S3 -> tar -> group -> decode -> transform
  -> batch);
* ``memory``: the same stages over the same records already in memory (:class:`MemorySource`),
  i.e. the decode + transform loop without any reading;
* ``s3-read``: the S3 pipeline without decode/transform (read + tar + group only), for scale;

each through a ``DataLoader(batch_size=None)`` with ``num_workers`` 0 and 2, best of
``--repeat`` interleaved runs, and prints the ratio ``s3 / memory`` per worker count (target >= 0.9).
The machine is shared: compare within a run. ``--csv`` writes the rows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tarfile
import tempfile
import time
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from awsio.config import S3Config

BUCKET = "awsio-bench-pipeline"


@contextlib.contextmanager
def _server(endpoint: str | None) -> Iterator[S3Config]:
    """An S3 endpoint: the given one (credentials from the environment) or a fresh LocalS3."""
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        yield S3Config(endpoint_url=endpoint)
        return
    from awsio.testing.local_s3 import LocalS3

    with tempfile.TemporaryDirectory(prefix="awsio-bench-pipeline-") as tmp:
        server = LocalS3(tmp)
        server.start()
        try:
            server.create_bucket(BUCKET)
            yield server.config()
        finally:
            server.stop()


def _jpegs(count: int, width: int, height: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct photo-like JPEGs (smooth gradients plus noise, quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for _ in range(count):
        base = np.stack([(xx * rng.uniform(0.2, 1.0) + yy * rng.uniform(0.2, 1.0) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=2)
        arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _shard(index: int, samples: int, images: list[bytes], classes: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(samples):
            n = index * samples + i
            for name, data in ((f"s{n:08d}.cls", str(n % classes).encode()),
                               (f"s{n:08d}.jpg", images[n % len(images)])):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ResizeToTensor:
    """The benchmark's transform: resize (bilinear) and make a float C x H x W tensor in [0, 1]."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Any) -> torch.Tensor:
        from PIL import Image

        arr = np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR), dtype=np.float32)
        return torch.from_numpy(arr / 255.0).permute(2, 0, 1).contiguous()


def _count(dataset: Any, workers: int) -> tuple[int, float]:
    """(samples, seconds) of one full pass through a DataLoader."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch[-1]) if isinstance(batch, (tuple, list)) else 1
    return n, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m awsio.bench.pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--endpoint", help="S3 endpoint (default: AWS_ENDPOINT_URL, else start LocalS3)")
    p.add_argument("--bucket", default=BUCKET)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--samples", type=int, default=250, help="samples per shard")
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--height", type=int, default=300)
    p.add_argument("--resize", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (best is kept)")
    p.add_argument("--quick", action="store_true", help="4 shards x 100 samples, 2 runs each")
    p.add_argument("--csv", help="write the rows here")
    args = p.parse_args(argv)
    if args.quick:
        args.shards, args.samples, args.repeat = 4, 100, 2
    workers = [int(w) for w in args.workers.split(",") if w.strip()]

    from awsio.dataset import S3IterableDataset
    from awsio.pipeline import MemorySource, Pipeline
    from awsio.s3.client import S3Client

    images = _jpegs(64, args.width, args.height)
    with _server(args.endpoint) as config:
        client = S3Client(config)
        urls = []
        total_bytes = 0
        for s in range(args.shards):
            data = _shard(s, args.samples, images, 10)
            url = f"s3://{args.bucket}/pipeline/train-{s:06d}.tar"
            client.put(url, data)
            urls.append(url)
            total_bytes += len(data)
        print(f"# {args.shards} shards x {args.samples} samples ({args.width}x{args.height} JPEG, "
              f"{total_bytes / args.shards / args.samples / 1024:.0f} KiB/sample, "
              f"{total_bytes / 2**20:.0f} MiB); backend {client.backend_name}; "
              f"transform resize {args.resize} + to tensor; batch {args.batch_size}", flush=True)
        source = S3IterableDataset(urls, config=config)
        records = list(source.iter_records())
        preproc = ResizeToTensor(args.resize)

        def full(src: Any) -> Pipeline:
            return (Pipeline(src).dataproc(batch_size=args.batch_size, shuffle=False)
                    .decode("pil").transform_fn(image=preproc))

        cases = {
            "s3": full(S3IterableDataset(urls, config=config)),
            "memory": full(MemorySource(records)),
            "s3-read": Pipeline(S3IterableDataset(urls, config=config)).dataproc(
                batch_size=args.batch_size, shuffle=False).to_tuple("cls"),
        }
        rows = []
        expected = args.shards * args.samples
        for w in workers:
            best = dict.fromkeys(cases, 0.0)
            # interleave the cases so that the shared machine's noise hits them alike
            for _ in range(args.repeat):
                for name, dataset in cases.items():
                    n, secs = _count(dataset, w)
                    if n != expected:
                        raise RuntimeError(f"{name} with {w} workers yielded {n} samples, not {expected}")
                    best[name] = max(best[name], n / secs)
            for name, rate_ in best.items():
                rows.append({"case": name, "workers": w, "samples": expected, "samples_per_s": round(rate_, 1)})
                print(f"{name:8s} workers={w}  {rate_:9.1f} samples/s", flush=True)
        client.close()
    rate = {(r["case"], r["workers"]): r["samples_per_s"] for r in rows}
    for w in workers:
        ratio = rate[("s3", w)] / rate[("memory", w)]
        print(f"ratio s3/memory workers={w}: {ratio:.2f}x (target >= 0.9)")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
