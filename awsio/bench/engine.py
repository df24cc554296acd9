"""The measurement engine every benchmark uses (the three programs and the Hydra bench job).

For one data set (a :class:`~awsio.bench.data.Manifest`) and a list of :class:`Case` s (a loader from
:mod:`awsio.bench.peers` with a DataLoader worker count), :meth:`Engine.run`:

1. **converts** the data once for each peer that needs it (litdata's ``optimize()``, MDS files for
   mosaicml-streaming), timed apart and reported as ``conversion_s`` (raw tar needs none);
2. **warms up**: every case runs once, untimed, through a counting proxy on 127.0.0.1
   (:mod:`awsio.bench.proxy`), which gives the GET / HEAD / LIST requests and the bytes per pass,
   fills the server's caches and shows that the case works (a failing case is reported, not timed);
   every pass must hand out the data set's samples and, for loaders that hand out bytes, the same
   bytes as the others (whole objects: the objects' bytes; see :meth:`Engine._agree`);
3. runs ``rounds`` **rounds**: every case once per round, back to back, in alternating order
   (:func:`awsio.bench.stats.round_order`), each in a fresh subprocess so that each gets its own
   client CPU time, peak memory and time to first sample. The server's CPU time is read (psutil)
   before and after each run when the benchmark started the server.

A run reads the data ``passes`` times with the same loader object (passes are added until at least
``min_bytes`` are read, 256 MiB by default); the first pass, from a fresh process, is the headline,
later passes (a second epoch: warm connections, local caches) are reported beside it. Figures come
from :mod:`awsio.bench.report`: medians over rounds with their range, and each loader's ratio to a
reference as the median of the per-round ratios.

The subprocess side, ``python -m awsio.bench.worker JOB.json``, is :mod:`awsio.bench.worker`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from awsio.bench import peers
from awsio.bench.stats import round_order

__all__ = ["Case", "Conversion", "Counted", "Engine", "Job", "Result", "Run"]

log = logging.getLogger("awsio.bench")
MiB = 1 << 20
GiB = 1 << 30


class Counted(NamedTuple):
    """What a loader yields when it counts its samples itself (e.g. the training job, per epoch)."""

    samples: int
    nbytes: int = 0


@dataclass
class Job:
    """Everything a measurement subprocess needs (JSON round trip; credentials stay in the env)."""

    peer: str
    kind: str
    urls: list[str]
    sizes: list[int]
    items: int | None
    endpoint: str | None
    region: str
    passes: int = 1
    workers: int = 0
    batch_size: int = 64
    connections: int = 32
    decode: bool = True
    image_size: int = 96
    transform: str = "resize"
    device: str = "cpu"
    converted: str | None = None
    cache_dir: str = ""
    payload: int | None = None  # bytes a pass hands out (checked when the loader yields bytes)
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    state: Any = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class Case:
    """A loader run with ``workers`` DataLoader workers, shown as ``label``."""

    peer: str
    workers: int = 0
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or (self.peer if not self.workers else f"{self.peer} w={self.workers}")


@dataclass
class Conversion:
    """A peer's one-off conversion of the data set: where the result is, how long it took."""

    url: str
    seconds: float | None  # None: converted by an earlier run
    note: str = ""


@dataclass
class Run:
    """One timed run (one fresh process): per-pass seconds, samples and bytes, and its costs."""

    pass_s: list[float]
    items: list[int]
    nbytes: list[int]
    first_s: float | None
    cpu_s: float
    rss_peak_mib: float
    server_cpu_s: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """Everything measured for one case."""

    case: Case
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    runs: list[Run | None] = field(default_factory=list)
    census: dict[str, int] | None = None
    conversion: Conversion | None = None

    def rates(self, which: str = "first") -> list[float | None]:
        """Samples/s per round: of the first pass, or (``later``) of the passes after it."""
        out: list[float | None] = []
        for r in self.runs:
            if r is None:
                out.append(None)
            elif which == "first":
                out.append(r.items[0] / r.pass_s[0] if r.pass_s[0] > 0 else None)
            else:
                n, s = sum(r.items[1:]), sum(r.pass_s[1:])
                out.append(n / s if s > 0 else None)
        return out


class Engine:
    """Runs cases on one data set: conversions, a counted warm-up, then alternating rounds.

    ``job`` holds the :class:`Job` fields shared by every case (batch size, image size, ...).
    ``progress`` receives one line per step (default: logged).
    """

    def __init__(self, endpoint: Any, manifest: Any, *, rounds: int = 3, warmup: bool = True,
                 min_bytes: int = 256 * MiB, passes: int = 1, timeout_s: float = 1800,
                 progress: Callable[[str], None] | None = None, **job: Any) -> None:
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, not {rounds}")
        self.endpoint, self.manifest = endpoint, manifest
        self.rounds, self.warmup, self.timeout_s = rounds, warmup, timeout_s
        # Tar shards come out a little under their nominal size: within 2 % counts as reached.
        need = math.ceil(0.98 * min_bytes / manifest.nbytes) if manifest.nbytes else 1
        self.passes = max(passes, need)
        # what a pass must deliver: the manifest's samples, else what the loaders agree on
        self.items: int | None = manifest.items
        self.payload: int | None = manifest.nbytes if manifest.kind == "objects" else None
        self.job = job
        self.say = progress or log.info

    def _job(self, case: Case, **changes: Any) -> Job:
        fields = dict(peer=case.peer, kind=self.manifest.kind, urls=self.manifest.urls, sizes=self.manifest.sizes,
                      items=self.items, endpoint=self.endpoint.url, region=self.endpoint.region,
                      passes=self.passes, workers=case.workers, options=dict(peers.get(case.peer).options),
                      payload=self.payload)
        fields.update(self.job)
        fields.update(changes)
        return Job(**fields)

    def run(self, cases: Sequence[Case]) -> list[Result]:
        """Measure ``cases``; returns one :class:`Result` per case, in the given order."""
        results = {c: Result(c) for c in cases}
        kind = self.manifest.kind
        for c in cases:
            reason = peers.get(c.peer).unavailable(kind)
            if reason:
                results[c].status, results[c].reason = "skipped", reason
                self.say(f"  {c.name}: skipped ({reason})")
        active = [c for c in cases if results[c].status == "ok"]
        conversions: dict[str, Conversion | Exception] = {}
        for c in active:
            mod = peers.get(c.peer).load()
            if hasattr(mod, "prepare") and c.peer not in conversions:
                self.say(f"  converting the data for {c.peer} (once per data set)")
                try:
                    conversions[c.peer] = mod.prepare(self.manifest, self.endpoint, peers.get(c.peer).options)
                except Exception as e:  # one peer's conversion failing must not lose the others
                    log.debug("conversion for %s failed", c.peer, exc_info=True)
                    conversions[c.peer] = e
            conv = conversions.get(c.peer)
            if isinstance(conv, Exception):
                results[c].status, results[c].reason = "failed", f"conversion: {_reason(conv)}"
            elif conv is not None:
                results[c].conversion = conv
        active = [c for c in active if results[c].status == "ok"]
        if self.warmup:
            warm = self._warm_up(active, results)
            active = self._agree(warm, results)
        for r in range(self.rounds):
            self.say(f"  round {r + 1}/{self.rounds}")
            for c in round_order(active, r):
                run = self._spawn(self._job(c, converted=_url(results[c].conversion)), c)
                if isinstance(run, str):
                    results[c].runs.append(None)
                    results[c].status, results[c].reason = "failed", run
                    self.say(f"    {c.name:28} FAILED: {run}")
                else:
                    results[c].runs.append(run)
                    mib = self.manifest.nbytes / MiB / run.pass_s[0]
                    self.say(f"    {c.name:28} {run.items[0] / run.pass_s[0]:10.1f} samples/s {mib:9.1f} MiB/s"
                             " (first pass)")
            if r == 0 and not self.warmup:  # no warm-up: the first round's passes are compared
                first = {c: results[c].runs[0] for c in active if results[c].runs[0] is not None}
                agreed = self._agree(first, results)
                for c in first:
                    if c not in agreed:
                        results[c].runs[0] = None
                active = [c for c in active if c in agreed or c not in first]
        for c in active:  # a case that failed in one round but not in others keeps its figures
            if any(r is not None for r in results[c].runs):
                results[c].status = "ok"
        return [results[c] for c in cases]

    def _agree(self, runs: dict[Case, Run], results: dict[Case, Result]) -> list[Case]:
        """The cases of ``runs`` whose first pass delivered what the others' did; the rest fail.

        A manifest made from HEADs (the Hydra job's) does not say how many samples a pass holds, and
        none says how many payload bytes a tar or image pass hands out: the loaders' passes must
        agree on both (the value most of them found; when as many found another, none is trusted),
        and every later run is checked against them. Loaders that count other units (whole shards,
        a training job's own count) and passes that yield no bytes (tensors) are not compared.
        """
        def agreed(values: dict[Case, int]) -> int | None:
            top = Counter(values.values()).most_common(2)
            return top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None

        compared = {c: r for c, r in runs.items() if self._counts_samples(c)}
        checks = [("samples", "items", {c: r.items[0] for c, r in compared.items()})]
        if self.payload is None:
            checks.append(("bytes", "payload", {c: r.nbytes[0] for c, r in compared.items() if r.nbytes[0]}))
        failed: dict[Case, str] = {}
        for what, attr, values in checks:
            if not values or getattr(self, attr) is not None:
                continue
            value = agreed(values)
            setattr(self, attr, value)
            for c, v in values.items():
                if value is None:
                    failed.setdefault(c, f"the loaders disagree on the {what} in a pass ("
                                      + ", ".join(f"{k.name}: {n}" for k, n in values.items()) + ")")
                elif v != value:
                    failed.setdefault(c, f"{v} {what} in a pass, the other loaders {value}")
        for c, reason in failed.items():
            results[c].status, results[c].reason = "failed", reason
            self.say(f"    {c.name:28} FAILED: {reason}")
        return [c for c in runs if c not in failed]

    def _counts_samples(self, case: Case) -> bool:
        """Whether ``case`` hands out the data set's samples (not whole shards, not its own count)."""
        mod = peers.get(case.peer).load()
        return self.manifest.kind != "train" and (not hasattr(mod, "expected")
                                                  or mod.expected(self._job(case)) == self.items)

    def _warm_up(self, cases: list[Case], results: dict[Case, Result]) -> dict[Case, Run]:
        from awsio.bench.proxy import CountingProxy

        self.say("  warm-up (untimed, requests counted through a proxy on 127.0.0.1)")
        proxy = CountingProxy(self.endpoint.url) if (self.endpoint.url or "").startswith("http://") else None
        ok: dict[Case, Run] = {}
        with proxy if proxy is not None else _nothing():
            for c in cases:
                via = proxy.url if proxy is not None else self.endpoint.url
                run = self._spawn(self._job(c, endpoint=via, passes=1, converted=_url(results[c].conversion)), c)
                counts = proxy.take() if proxy is not None else None
                if isinstance(run, str):
                    results[c].status, results[c].reason = "failed", run
                    self.say(f"    {c.name:28} FAILED: {run}")
                    continue
                results[c].census = counts if peers.get(c.peer).reads_in_run else None
                ok[c] = run
                shown = ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items()) if k != "wire_bytes")
                self.say(f"    {c.name:28} ok ({shown or 'requests not counted'})")
        return ok

    def _spawn(self, job: Job, case: Case) -> Run | str:
        """Run ``job`` in a fresh subprocess; its :class:`Run`, or the reason it failed."""
        env = {**os.environ, **self.endpoint.env}
        if job.endpoint:  # this run's (the counting proxy's in the warm-up), whatever the shell says
            env.pop("AWS_ENDPOINT_URL_S3", None)
            env["AWS_ENDPOINT_URL"] = job.endpoint
        with tempfile.TemporaryDirectory(prefix="awsio-bench-run-") as tmp:
            job.cache_dir = os.path.join(tmp, "cache")
            path = os.path.join(tmp, "job.json")
            with open(path, "w") as f:
                json.dump({k: v for k, v in asdict(job).items() if k != "state"}, f)
            cpu0 = self.endpoint.server_cpu_s()
            try:
                proc = subprocess.run([sys.executable, "-m", "awsio.bench.worker", path],
                                      capture_output=True, text=True, env=env, timeout=self.timeout_s, cwd=tmp)
            except subprocess.TimeoutExpired:
                return f"timed out after {self.timeout_s:.0f} s"
            cpu1 = self.endpoint.server_cpu_s()
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            return (lines[-1] if lines else f"exit status {proc.returncode}")[:300]
        try:
            run = Run(**json.loads(proc.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError, TypeError) as e:
            return f"no result from the worker ({e}); stderr: {proc.stderr.strip()[-200:]}"
        if cpu0 is not None and cpu1 is not None:
            run.server_cpu_s = cpu1 - cpu0
        return run


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _url(conv: Conversion | None) -> str | None:
    return conv.url if conv is not None else None


def _reason(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]
