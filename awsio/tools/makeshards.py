"""Write tar shards (``prefix-000000.tar`` ...) from a folder, or a synthetic image set, locally or to S3.

Inputs:

* an ImageFolder tree (``root/<class>/<name>.jpg``): each image becomes a sample ``<class>/<name>``
  with fields ``.jpg`` (the original bytes, whatever the image extension) and ``.cls`` (the class
  index, classes sorted by folder name);
* any folder of files grouped by key (``a/x.jpg``, ``a/x.json`` -> sample ``a/x``): members are
  written as they are, fields of a sample together, sorted by extension;
* ``--synthetic N``: N real JPEGs in ``--classes`` classes whose class is visible in the pixels
  (a class colour and a class-oriented stripe pattern under noise), so a small CNN learns it in a
  couple of epochs. Deterministic given ``--seed``.

Shards close when they reach ``--maxcount`` samples or ``--maxsize`` bytes. Each shard is
written to a local folder or streamed to ``s3://bucket/prefix/`` (multipart upload through
:class:`awsio.s3.client.S3Client`), with its per-shard index (see :mod:`awsio.archives.index`)
so that equal-work DDP knows the sample counts without reading the shards.
An output that already holds ``prefix-000000.tar`` is refused unless ``--overwrite`` (which
also deletes the earlier run's shards and indexes past the last one written).

Example::

    python -m awsio.tools.makeshards --synthetic 2000 --classes 10 --maxcount 250 \\
        --output s3://demo/synthetic/ --prefix train
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
import time
from typing import IO, Any, Callable, Iterable, Sequence

from awsio.archives.index import index_url
from awsio.grouping import is_metadata, sample_key
from awsio.tools.storage import Storage, is_s3, join
from awsio.tools.synthetic import Sample, synthetic_samples

__all__ = ["Sample", "ShardWriter", "folder_samples", "main", "synthetic_samples", "write_shards"]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# -- inputs --------------------------------------------------------------------------------------
def _walk(root: str) -> list[str]:
    """Files under ``root`` (relative, ``/``-separated, sorted), through symlinked folders too;
    a folder reached again (a link loop, or a second link to it) is walked once, with a warning."""
    out = []
    seen: dict[str, str] = {}  # realpath -> the path it was first walked as
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            log.warning("%s is %s again (a symlink): not packed twice", dirpath, seen[real])
            dirnames[:] = []
            continue
        seen[real] = dirpath
        dirnames.sort()
        for f in sorted(filenames):
            if not f.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return out


def _is_imagefolder(files: Sequence[str]) -> bool:
    return bool(files) and all(
        f.count("/") == 1 and os.path.splitext(f)[1].lower() in IMAGE_EXTS for f in files)


def folder_samples(root: str, *, mode: str = "auto", shuffle: bool = True, seed: int = 0) -> tuple[list[Callable[[], Sample]], dict[str, Any]]:
    """Lazy samples of a folder (loaders, so file bytes are read only when a sample is written).

    ``mode``: ``imagefolder`` (class sub-folders of images, adds ``.cls``), ``files`` (group any
    files by key), or ``auto`` (imagefolder when every file is an image one level down).
    Returns (loaders, info) where info records the mode and, for imagefolder, the class names.
    Raises FileNotFoundError for a missing or empty folder, ValueError for a bad mode.
    """
    import numpy as np

    if not os.path.isdir(root):
        raise FileNotFoundError(f"input folder {root!r} does not exist")
    files = _walk(root)
    if not files:
        raise FileNotFoundError(f"input folder {root!r} has no files")
    if mode == "auto":
        mode = "imagefolder" if _is_imagefolder(files) else "files"
    info: dict[str, Any] = {"mode": mode}
    loaders: list[Callable[[], Sample]] = []
    if mode == "imagefolder":
        if not _is_imagefolder(files):
            raise ValueError(f"{root!r} is not an ImageFolder tree (class/<image> files only)")
        classes = sorted({f.split("/")[0] for f in files})
        info["classes"] = classes
        index = {c: i for i, c in enumerate(classes)}
        first: dict[str, str] = {}  # key -> the file that has it
        for f in files:
            key = os.path.splitext(f)[0]
            key = key.replace(".", "_")  # the key ends at the first dot of the basename
            if key in first:
                raise ValueError(f"{first[key]!r} and {f!r} in {root!r} would both be sample {key!r} "
                                 "(readers would merge or reject them): rename one")
            first[key] = f
            loaders.append(_ImageLoader(os.path.join(root, f), key, index[f.split("/")[0]]))
    elif mode == "files":
        groups: dict[str, list[tuple[str, str]]] = {}
        for f in files:
            if is_metadata(f):
                raise ValueError(f"{f!r} in {root!r} has a __name__ key, which readers skip as "
                                 "metadata: rename it or pack its folder otherwise")
            key, field = sample_key(f)
            groups.setdefault(key, []).append((field, f))
        for key in sorted(groups):
            loaders.append(_GroupLoader(root, key, sorted(groups[key])))
    else:
        raise ValueError(f"mode must be auto, imagefolder or files, not {mode!r}")
    if shuffle:
        order = np.random.default_rng([seed, 2]).permutation(len(loaders))
        loaders = [loaders[i] for i in order]
    return loaders, info


class _ImageLoader:
    def __init__(self, path: str, key: str, label: int) -> None:
        self.path, self.key, self.label = path, key, label

    def __call__(self) -> Sample:
        with open(self.path, "rb") as f:
            data = f.read()
        return Sample(self.key, (("cls", str(self.label).encode()), ("jpg", data)))


class _GroupLoader:
    def __init__(self, root: str, key: str, members: list[tuple[str, str]]) -> None:
        self.root, self.key, self.members = root, key, members

    def __call__(self) -> Sample:
        fields = []
        for field, rel in self.members:
            with open(os.path.join(self.root, rel), "rb") as f:
                fields.append((field, f.read()))
        return Sample(self.key, tuple(fields))


# -- output --------------------------------------------------------------------------------------
def write_index(storage: Storage, shard_url: str, entries: list[dict[str, Any]], size: int) -> str:
    """Write the per-shard member index next to the shard (``<shard>.idx.json``); returns where.

    The format is :class:`awsio.archives.index.ShardIndex`'s (names, header offsets, data sizes),
    which the datasets read to find every sample's byte range; written by
    :func:`awsio.archives.index.write_index`, the one index writer.
    """
    from awsio.archives.index import ShardIndex
    from awsio.archives.index import write_index as write

    end = max((e["data_offset"] + -(-e["size"] // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for e in entries),
              default=0)
    location = index_url(shard_url)
    write(ShardIndex("tar", size, end, tuple((e["name"], e["offset"], e["size"]) for e in entries)), location,
          client=storage)
    return location


def _member_name(key: str, field: str) -> str:
    """``key.field``, or ``key`` alone for a field-less file (``pkg/README``), as readers split it."""
    return f"{key}.{field}" if field else key


def _tar_bytes(sample: Sample) -> int:
    """Bytes a sample takes in a tar: a header block per member (two with a pax/long name) + data."""
    total = 0
    for field, data in sample.fields:
        name_len = len(_member_name(sample.key, field))
        header = tarfile.BLOCKSIZE * (1 if name_len < 100 else 3)
        total += header + -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return total


class ShardWriter:
    """Accumulates samples into tar shards and writes each one (local file or S3 upload) when full.

    Refuses (FileExistsError) an output that already holds this prefix's first shard unless
    ``overwrite``: then shards are replaced and, on close, the earlier run's shards (and sidecars)
    past the last one written are deleted, so the prefix holds this run's samples only. A shard's
    old sidecar is deleted before the shard is uploaded, so no sidecar ever describes another shard.
    """

    def __init__(self, output: str, *, prefix: str = "shard", maxcount: int = 1000,
                 maxsize: int = 256 << 20, storage: Storage | None = None, index: bool = True,
                 start: int = 0, overwrite: bool = False) -> None:
        if maxcount < 1:
            raise ValueError("maxcount must be >= 1")
        if maxsize < 1024:
            raise ValueError("maxsize must be >= 1024 bytes")
        self.output, self.prefix = output, prefix
        self.maxcount, self.maxsize = maxcount, maxsize
        self.storage = storage or Storage()
        self.index = index
        self.overwrite = overwrite
        self.shard = start
        if not overwrite and self.storage.exists(self._url(start)):
            raise FileExistsError(f"{self._url(start)} already exists (an earlier run's shards): "
                                  "choose another output or prefix, or pass overwrite=True (--overwrite)")
        self.shards: list[str] = []
        self.samples = 0
        self.bytes = 0
        self._open_new()

    def _open_new(self) -> None:
        # Spills to disk past 64 MiB: memory stays bounded however large --maxsize is.
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=64 << 20)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self._count = 0
        self._entries: list[dict[str, Any]] = []

    def _url(self, shard: int) -> str:
        return join(self.output, f"{self.prefix}-{shard:06d}.tar")

    def write(self, sample: Sample) -> None:
        if self._count and (self._count >= self.maxcount or
                            self._file.tell() + _tar_bytes(sample) + 2 * tarfile.BLOCKSIZE > self.maxsize):
            self._flush()
        for field, data in sample.fields:
            info = tarfile.TarInfo(_member_name(sample.key, field))
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = ""
            offset = self._file.tell()
            self._tar.addfile(info, io.BytesIO(data))
            data_offset = self._file.tell() - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            self._entries.append({"name": info.name, "key": sample.key, "offset": offset,
                                  "data_offset": data_offset, "size": len(data)})
        self._count += 1

    def _flush(self) -> None:
        if self._count == 0:
            return
        self._end_tar()
        size = self._file.tell()
        self._file.seek(0)
        url = self._url(self.shard)
        self.storage.delete(index_url(url))
        self.storage.put(url, self._file)
        self._file.close()
        if self.index:
            write_index(self.storage, url, self._entries, size)
        self.shards.append(url)
        self.samples += self._count
        self.bytes += size
        self.shard += 1
        self._open_new()

    def _end_tar(self) -> None:
        # The end-of-archive marker only: tarfile.close() would also pad to a 10 KiB record,
        # which readers do not need and which would break --maxsize for small shards.
        self._file.write(b"\0" * (2 * tarfile.BLOCKSIZE))
        self._tar.closed = True  # type: ignore[attr-defined]

    def close(self) -> None:
        self._flush()
        self._end_tar()
        self._file.close()
        stale = self.shard
        while self.overwrite and self.storage.exists(self._url(stale)):
            self.storage.delete(index_url(self._url(stale)))
            self.storage.delete(self._url(stale))
            stale += 1

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._file.close()


def write_shards(samples: Iterable[Sample | Callable[[], Sample]], output: str, *, prefix: str = "shard",
                 maxcount: int = 1000, maxsize: int = 256 << 20, storage: Storage | None = None,
                 index: bool = True, total: int | None = None, progress: bool = True,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write ``samples`` as shards under ``output``; returns a summary dict (shards, samples, bytes, seconds).

    Raises FileExistsError if ``output`` already holds ``prefix`` shards, unless ``overwrite``
    (see :class:`ShardWriter`)."""
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sample", desc=f"{prefix} shards", file=sys.stderr, leave=False,
                   disable=None)
    with ShardWriter(output, prefix=prefix, maxcount=maxcount, maxsize=maxsize, storage=storage,
                     index=index, overwrite=overwrite) as writer:
        for s in samples:
            writer.write(s if isinstance(s, Sample) else s())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return {"output": output, "prefix": prefix, "shards": len(writer.shards), "samples": writer.samples,
            "bytes": writer.bytes, "seconds": round(seconds, 3), "urls": writer.shards}


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 1G, 100000)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m awsio.tools.makeshards", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", help="folder to pack (ImageFolder tree or files grouped by key)")
    src.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic labelled JPEGs")
    p.add_argument("--output", "-o", required=True, help="local folder or s3://bucket/prefix/")
    p.add_argument("--prefix", default="train", help="shard name prefix (default: train)")
    p.add_argument("--maxcount", type=int, default=1000, help="samples per shard at most (default 1000)")
    p.add_argument("--maxsize", type=_size, default=256 << 20, help="bytes per shard at most (default 256M)")
    p.add_argument("--mode", choices=("auto", "imagefolder", "files"), default="auto")
    p.add_argument("--no-shuffle", action="store_true", help="keep folder order (default: shuffled by seed)")
    p.add_argument("--classes", type=int, default=10, help="synthetic: number of classes")
    p.add_argument("--image-size", type=int, default=32, help="synthetic: image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-index", action="store_true", help="do not write per-shard index files")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the shards of --prefix already in --output and delete the earlier run's "
                        "shards and index files past the last one written (default: refuse such an output)")
    p.add_argument("--endpoint-url", help="S3 endpoint (default: from AWS_ENDPOINT_URL etc.)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = None
    if is_s3(args.output) or args.endpoint_url:
        from awsio.config import S3Config

        config = S3Config(endpoint_url=args.endpoint_url) if args.endpoint_url else S3Config()
    storage = Storage(config)
    output = args.output if is_s3(args.output) else os.path.abspath(args.output)
    if is_s3(output):
        from awsio.s3.url import parse_url

        parse_url(output)  # clear error for a malformed URL before any work
    info: dict[str, Any] = {}
    try:
        if args.synthetic is not None:
            samples: Iterable[Any] = synthetic_samples(args.synthetic, classes=args.classes,
                                                      size=args.image_size, seed=args.seed)
            total = args.synthetic
        else:
            loaders, info = folder_samples(args.input, mode=args.mode, shuffle=not args.no_shuffle,
                                           seed=args.seed)
            samples, total = loaders, len(loaders)
        summary = write_shards(samples, output, prefix=args.prefix, maxcount=args.maxcount,
                               maxsize=args.maxsize, storage=storage, index=not args.no_index,
                               total=total, progress=not args.quiet, overwrite=args.overwrite)
        if info.get("classes"):  # after the shards: a refused run leaves the output as it was
            storage.put(join(output, f"{args.prefix}-classes.json"), json.dumps(info["classes"]).encode())
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as e:
        print(f"makeshards: error: {e}", file=sys.stderr)
        return 2
    finally:
        storage.close()
    s = summary
    mib = s["bytes"] / (1 << 20)
    rate = mib / s["seconds"] if s["seconds"] > 0 else 0.0
    last = s["urls"][-1].rsplit("/", 1)[-1] if s["urls"] else "-"
    pattern = join(output, f"{args.prefix}-{{000000..{s['shards'] - 1:06d}}}.tar") if s["shards"] else ""
    print(f"makeshards: {s['shards']} shards, {s['samples']} samples, {s['bytes']} bytes ({mib:.1f} MiB) "
          f"in {s['seconds']:.2f} s ({rate:.1f} MiB/s); last {last}")
    if pattern:
        print(f"makeshards: urls {pattern}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
