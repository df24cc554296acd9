"""Request counters: what a process asked of S3, what it cost, and how it went.

A :class:`Metrics` is a thread-safe set of counters kept by each :class:`~awsio.s3.client.S3Client`
(both backends feed it the same way: one ``request`` per HTTP attempt, one ``retry`` per attempt
that failed and was tried again) and by the datasets (samples, skips). :meth:`Metrics.snapshot`
gives a frozen, picklable :class:`Snapshot`; snapshots add up (:func:`merge`), subtract (per-epoch
deltas of cumulative counters) and sum over ``torch.distributed`` ranks (:func:`all_ranks`).

Counters (all integers): ``get_requests``, ``head_requests``, ``list_requests``, ``put_requests``
(every attempt is a request S3 bills), ``get_bytes``, ``put_bytes``, ``retries_<cause>`` for the
causes in :data:`CAUSES` (``throttle``: 503 and 429; ``5xx``: other server errors; ``reset``: the
connection failed, closed or was refused; ``timeout``: connect or read timed out; ``integrity``: a
reply that contradicted the size, range or checksum), ``errors`` (requests that failed for good),
``samples``, ``skips``. Time to first byte (each GET or HEAD answered with its data) goes into a
log-scale histogram (16 buckets per decade, so percentiles are within ~8 %).

Counters hold no URLs, keys or credentials: only numbers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from awsio.s3.threads import renew_lock_after_fork
from awsio.world import in_worker

__all__ = ["CAUSES", "OPS", "DatasetMetrics", "Metrics", "Snapshot", "Spool", "all_ranks", "merge", "request_cost"]

log = logging.getLogger(__name__)

OPS = ("get", "head", "list", "put")
CAUSES = ("throttle", "5xx", "reset", "timeout", "integrity")
# AWS list prices in us-east-1 (S3 Standard), USD per request.
PRICES = {"get": 0.0004 / 1000, "head": 0.0004 / 1000, "list": 0.005 / 1000, "put": 0.005 / 1000}

COUNTERS = (*(f"{op}_requests" for op in OPS), "get_bytes", "put_bytes", *(f"retries_{c}" for c in CAUSES),
            "errors", "samples", "skips")

_PER_DECADE = 16
_LOW = 1e-5  # seconds: the first bucket's upper edge
_BUCKETS = 8 * _PER_DECADE  # up to 1000 s


def _bucket(seconds: float) -> int:
    if not seconds > _LOW:  # (NaN too: a counter never raises)
        return 0
    if seconds >= _LOW * 10 ** (_BUCKETS / _PER_DECADE):  # (inf too)
        return _BUCKETS - 1
    return min(_BUCKETS - 1, 1 + int(math.log10(seconds / _LOW) * _PER_DECADE))


def _bucket_mid(i: int) -> float:
    """The geometric middle of bucket ``i`` (its lower edge for the first)."""
    if i == 0:
        return _LOW
    return float(_LOW * 10 ** ((i - 0.5) / _PER_DECADE))


def request_cost(counts: Mapping[str, int]) -> float:
    """USD of the requests counted, at us-east-1 list prices (S3 Standard)."""
    return sum(counts.get(f"{op}_requests", 0) * PRICES[op] for op in OPS)


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment (see the module docstring for the names); picklable, JSON-able."""

    counts: Mapping[str, int] = field(default_factory=dict)
    ttfb: tuple[int, ...] = (0,) * _BUCKETS  # requests per time-to-first-byte bucket

    def __getitem__(self, name: str) -> int:
        return int(self.counts.get(name, 0))

    def __add__(self, other: Snapshot) -> Snapshot:
        counts = Counter(self.counts)
        counts.update(other.counts)
        return Snapshot(dict(counts), tuple(a + b for a, b in zip(self.ttfb, other.ttfb)))

    def __sub__(self, other: Snapshot) -> Snapshot:
        """What happened since ``other`` (an earlier snapshot of the same counters)."""
        names = set(self.counts) | set(other.counts)
        return Snapshot({n: self[n] - other[n] for n in names},
                        tuple(a - b for a, b in zip(self.ttfb, other.ttfb)))

    def ttfb_quantile(self, q: float) -> float | None:
        """Time to first byte (seconds) below which a fraction ``q`` of answers came; None if none."""
        total = sum(self.ttfb)
        if total <= 0:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.ttfb):
            seen += n
            if seen >= rank and n:
                return _bucket_mid(i)
        return _bucket_mid(_BUCKETS - 1)  # pragma: no cover - rounding

    @property
    def cost_usd(self) -> float:
        return request_cost(self.counts)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able values: every counter (the standard ones always, 0 when nothing was
        counted), ``ttfb_p50_ms``, ``ttfb_p99_ms`` (None without answers), ``request_cost_usd``."""
        out: dict[str, Any] = {n: self[n] for n in sorted(set(self.counts) | set(COUNTERS))}
        for q, name in ((0.5, "ttfb_p50_ms"), (0.99, "ttfb_p99_ms")):
            v = self.ttfb_quantile(q)
            out[name] = None if v is None else round(v * 1000, 3)
        out["request_cost_usd"] = round(self.cost_usd, 6)
        return out

    def summary(self) -> str:
        """One line: requests, bytes, retries, TTFB, samples, skips, cost at us-east-1 list prices."""
        d = self.as_dict()
        retries = ", ".join(f"{c} {self['retries_' + c]}" for c in CAUSES if self["retries_" + c])
        p50, p99 = d["ttfb_p50_ms"], d["ttfb_p99_ms"]
        ttfb = f"TTFB p50 {p50:.1f} ms p99 {p99:.1f} ms" if p50 is not None else "TTFB n/a"
        return (f"GET {self['get_requests']} HEAD {self['head_requests']} LIST {self['list_requests']} "
                f"PUT {self['put_requests']}, {self['get_bytes'] / 1e6:.1f} MB read, "
                f"retries {sum(self['retries_' + c] for c in CAUSES)}{f' ({retries})' if retries else ''}, "
                f"errors {self['errors']}, {ttfb}, samples {self['samples']}, skips {self['skips']}, "
                f"request cost ${self.cost_usd:.4f} at us-east-1 list prices")


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of ``snapshots`` (e.g. of every worker and rank)."""
    out = Snapshot()
    for s in snapshots:
        out = out + s
    return out


class Metrics:
    """Live, thread-safe counters of one process (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._ttfb = [0] * _BUCKETS
        renew_lock_after_fork(self)  # (a reader thread may be counting at a DataLoader worker's fork)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def request(self, op: str, nbytes: int = 0, ttfb: float | None = None, n: int = 1) -> None:
        """``n`` HTTP attempts of ``op`` (get/head/list/put), ``nbytes`` of body, one TTFB sample."""
        with self._lock:
            self._counts[f"{op}_requests"] += n
            if nbytes:
                self._counts[f"{op}_bytes"] += nbytes
            if ttfb is not None and ttfb >= 0:
                self._ttfb[_bucket(ttfb)] += 1

    def ttfb(self, seconds: float) -> None:
        """One time-to-first-byte sample (request sent to reply headers in), in seconds."""
        with self._lock:
            self._ttfb[_bucket(seconds)] += 1

    def retry(self, cause: str, n: int = 1) -> None:
        """``n`` failed attempts that were tried again, by cause (one of :data:`CAUSES`)."""
        with self._lock:
            self._counts[f"retries_{cause}"] += n

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(dict(self._counts), tuple(self._ttfb))

    def __getstate__(self) -> dict[str, Any]:
        s = self.snapshot()
        return {"counts": dict(s.counts), "ttfb": list(s.ttfb)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self._counts.update(state["counts"])
        self._ttfb = list(state["ttfb"])


def all_ranks(snapshot: Snapshot) -> Snapshot:
    """The sum of ``snapshot`` over every rank when ``torch.distributed`` is initialised (a
    collective: every rank must call it), else ``snapshot`` itself."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency of the datasets
        return snapshot
    if not (dist.is_available() and dist.is_initialized()):
        return snapshot
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (dict(snapshot.counts), list(snapshot.ttfb)))
    return merge(Snapshot(c, tuple(t)) for c, t in gathered)


class Spool:
    """A directory where DataLoader workers leave their cumulative snapshots for the main process.

    Workers are separate processes; each writes ``<dir>/<name>.json`` (replaced atomically) and the
    main process sums what is there (:meth:`collect`). JSON, never pickle: nothing read is executed.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def publish(self, name: str, snapshot: Snapshot) -> None:
        """Write ``snapshot`` as ``name``; a failure is logged, never raised (counters are advisory)."""
        try:
            os.makedirs(self.path, exist_ok=True)
            final = os.path.join(self.path, f"{name}.json")
            tmp = f"{final}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"counts": dict(snapshot.counts), "ttfb": list(snapshot.ttfb)}, f)
            os.replace(tmp, final)
        except OSError as exc:
            log.warning("could not write metrics to %s: %s", self.path, exc)

    def collect(self) -> Snapshot:
        """The sum of every snapshot published (nothing when none was)."""
        out = Snapshot()
        try:
            names = sorted(n for n in os.listdir(self.path) if n.endswith(".json"))
        except FileNotFoundError:
            return out
        for name in names:
            try:
                with open(os.path.join(self.path, name)) as f:
                    raw = json.load(f)
                out = out + Snapshot({str(k): int(v) for k, v in raw["counts"].items()},
                                     tuple(int(x) for x in raw["ttfb"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable metrics file %s: %s", name, exc)
        return out


def _remove_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker's copy going away must not remove the parent's
        shutil.rmtree(path, ignore_errors=True)


class DatasetMetrics:
    """The counters of one dataset: its samples and skips, plus its client's, summed over the
    process that made it and its DataLoader workers.

    Workers are separate processes: each publishes its cumulative counters to a :class:`Spool`
    (a temporary directory named when the dataset is made, removed with it) at most once a
    second while it reads and at the end of each pass, under a name of its own (pid and a
    random token: a later worker may get an earlier one's pid); :meth:`snapshot` in the main
    process adds them. A worker also publishes when it exits (a loop that stopped early, a map-style dataset),
    unless it is killed.
    """

    PUBLISH_EVERY_S = 1.0

    def __init__(self) -> None:
        self.spool = Spool(os.path.join(tempfile.gettempdir(), f"awsio-metrics-{uuid.uuid4().hex}"))
        weakref.finalize(self, _remove_dir, self.spool.path, os.getpid())
        self._reset()

    def _reset(self) -> None:
        self._local = Metrics()
        self._pid = os.getpid()
        # These counters' spool name: with the pid alone, a later worker given an earlier one's
        # pid (the next epoch's) would replace that worker's counts.
        self._name = uuid.uuid4().hex
        self._published = 0.0
        self._client: Any = None
        self._at_exit = False

    def __getstate__(self) -> dict[str, Any]:
        return {"spool": self.spool}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spool = state["spool"]
        self._reset()

    def _counters(self) -> Metrics:
        if self._pid != os.getpid():  # a forked worker starts from zero (see S3Client.metrics)
            self._reset()
        return self._local

    def count(self, client: Any, samples: int = 0, skips: int = 0, final: bool = False) -> None:
        """Count ``samples`` delivered and ``skips``; in a DataLoader worker, publish now and then
        (``final``: at the end of a pass, always)."""
        m = self._counters()
        if samples:
            m.add("samples", samples)
        if skips:
            m.add("skips", skips)
        if in_worker():
            self._client = client
            if not self._at_exit:  # multiprocessing runs these when the worker exits normally
                import multiprocessing.util

                multiprocessing.util.Finalize(None, self._publish, exitpriority=10)
                self._at_exit = True
            now = time.monotonic()
            if final or now - self._published >= self.PUBLISH_EVERY_S:
                self._published = now
                self._publish()

    def _publish(self) -> None:
        from awsio.world import current_world

        world = current_world()
        own = self._local.snapshot() + _client_metrics(self._client)
        self.spool.publish(f"r{world.rank}-w{world.worker}-{os.getpid()}-{self._name}", own)

    def snapshot(self, client: Any, ranks: bool = False) -> Snapshot:
        """This process's counters and its client's, plus (outside a worker) what the workers
        published; ``ranks=True`` sums over ``torch.distributed`` ranks (every rank must call)."""
        own = self._counters().snapshot() + _client_metrics(client)
        if not in_worker():
            own = own + self.spool.collect()
        return all_ranks(own) if ranks else own


def _client_metrics(client: Any) -> Snapshot:
    """The counters of ``client`` (none for a client that keeps none, e.g. a test double)."""
    metrics = getattr(client, "metrics", None)
    return metrics() if metrics is not None else Snapshot()


