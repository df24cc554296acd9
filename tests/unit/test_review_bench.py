"""Review of the benchmark code: what the engine, the worker and the report must not let through
(a loader short of samples or bytes, a ratio that is not a median of per-round ratios, a MiB/s
that counts other bytes for one loader, start-up timed for one loader only). No server: the
engine's subprocesses are replaced by fake runs, the worker runs a fake peer in this process."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from awsio.bench import peers, report
from awsio.bench.data import Manifest
from awsio.bench.engine import Case, Engine, Job, Result, Run
from awsio.bench.run import Goal, check_goals


class _Endpoint:
    url = None  # no proxy: the warm-up counts nothing
    region = "us-east-1"
    env: dict[str, str] = {}

    def server_cpu_s(self) -> None:
        return None


def _fake_peers(monkeypatch, names):
    # boto3_peer has no prepare() and no expected(): a plain sample loader
    table = dict(peers.PEERS)
    for n in names:
        table[n] = peers.Peer(n, "boto3_peer", ("images", "tar", "objects"))
    monkeypatch.setattr(peers, "PEERS", table)


def _engine(monkeypatch, manifest, yields, warmup=True, rounds=2):
    """An engine whose runs are fake: ``yields[peer] = (samples, bytes)`` per pass."""
    jobs: list[Job] = []

    def spawn(self, job, case):
        jobs.append(job)
        n, b = yields[case.peer]
        if job.items is not None and n != job.items:  # what the worker checks
            return f"{case.peer} yielded {n} samples in pass 1, the data set holds {job.items}"
        return Run(pass_s=[1.0], items=[n], nbytes=[b], first_s=0.1, cpu_s=0.1, rss_peak_mib=1.0)

    monkeypatch.setattr(Engine, "_spawn", spawn)
    return Engine(_Endpoint(), manifest, rounds=rounds, warmup=warmup, min_bytes=0), jobs


@pytest.mark.parametrize("warmup", [True, False])
def test_unknown_sample_count_is_checked_across_loaders(monkeypatch, warmup):
    # The Hydra bench job's manifest comes from HEADs (items=None): a loader that drops a shard or
    # a remainder must not be timed as if it had read the data set.
    _fake_peers(monkeypatch, ["fa", "fb", "fc"])
    manifest = Manifest("images", ["s3://b/s0.tar", "s3://b/s1.tar"], [1000, 1000], None, "2 shards")
    engine, jobs = _engine(monkeypatch, manifest, {"fa": (200, 0), "fb": (200, 0), "fc": (192, 0)}, warmup)
    got = {r.case.peer: r for r in engine.run([Case("fa"), Case("fb"), Case("fc")])}
    assert got["fa"].status == got["fb"].status == "ok"
    assert got["fc"].status == "failed" and "192" in got["fc"].reason and "200" in got["fc"].reason
    assert all(r is None for r in got["fc"].runs)
    # every later run checks each pass against 200 (the rounds after the warm-up, or after round 1)
    assert [j.items for j in jobs[3:]] == [200] * (4 if warmup else 2)


def test_loaders_disagreeing_without_majority_all_fail(monkeypatch):
    _fake_peers(monkeypatch, ["fa", "fb"])
    manifest = Manifest("images", ["s3://b/s0.tar"], [1000], None, "1 shard")
    engine, _ = _engine(monkeypatch, manifest, {"fa": (200, 0), "fb": (199, 0)})
    got = engine.run([Case("fa"), Case("fb")])
    assert [r.status for r in got] == ["failed", "failed"]


def test_payload_bytes_checked_across_loaders(monkeypatch):
    # Every sample there, but one loader's members come out short (a truncated body): not the data.
    _fake_peers(monkeypatch, ["fa", "fb", "fc"])
    manifest = Manifest("tar", ["s3://b/s0.tar"], [300_000], 100, "1 shard")
    engine, jobs = _engine(monkeypatch, manifest, {"fa": (100, 204_800), "fb": (100, 204_800), "fc": (100, 204_000)})
    got = {r.case.peer: r for r in engine.run([Case("fa"), Case("fb"), Case("fc")])}
    assert got["fa"].status == "ok" and got["fc"].status == "failed" and "204000" in got["fc"].reason
    assert all(j.payload == 204_800 for j in jobs[3:])


def _fake_module(monkeypatch, name, data):
    mod = types.ModuleType(f"awsio.bench.peers.{name}")
    mod.make = lambda job: data  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(peers, "PEERS", {**peers.PEERS, name: peers.Peer(name, name, ("objects",))})


def test_worker_checks_the_bytes_of_whole_objects(monkeypatch):
    # Objects are read whole: a pass that hands out fewer bytes than the objects hold (a body cut
    # short) read less than the others, whatever its object count.
    pytest.importorskip("psutil")
    pytest.importorskip("botocore")
    from awsio.bench.worker import work

    _fake_module(monkeypatch, "_review_short", [b"x" * 100, b"x" * 60])
    job = Job(peer="_review_short", kind="objects", urls=["s3://b/a", "s3://b/b"], sizes=[100, 100], items=2,
              endpoint=None, region="us-east-1")
    with pytest.raises(RuntimeError, match="160 bytes"):
        work(job)
    _fake_module(monkeypatch, "_review_whole", [b"x" * 100, b"x" * 100])
    job.peer = "_review_whole"
    assert work(job).nbytes == [200]


def _run(s, items, nbytes, passes=1):
    return Run(pass_s=[s] * passes, items=[items] * passes, nbytes=[nbytes] * passes, first_s=0.1, cpu_s=0.1,
               rss_peak_mib=1.0)


def test_later_goal_is_the_median_of_per_round_ratios(capsys):
    # awsio's first pass against litdata's cached epoch: per round 2.0, 0.5, 2.0 -> median 2.0; a
    # ratio of the two medians (200 / 150 = 1.33) is not what the README's method says.
    manifest = Manifest("images", ["s3://b/k"], [1 << 20], 100, "test")
    aw = Result(Case("awsio"), runs=[_run(1.0, 100 * k, 0, 2) for k in (1, 2, 3)])
    lit = Result(Case("litdata"), runs=[Run(pass_s=[1.0, 1.0], items=[10, n], nbytes=[0, 0], first_s=0.1, cpu_s=0.1,
                                            rss_peak_mib=1.0) for n in (50, 400, 150)])
    table = report.rows([aw, lit], manifest)
    check_goals(table, [Goal(0, "litdata", 1.9, "later", later=True)])
    out = capsys.readouterr().out
    assert "2.00x (0.50-2.00) met" in out, out


def test_tar_mib_s_compares_the_same_bytes_for_every_loader():
    # awsio hands out members (payload bytes), awsio-raw whole shards (tar headers included): in the
    # same time they read the same data set, so their MiB/s ratio must be 1.0, not payload/shard.
    manifest = Manifest("tar", ["s3://b/s0.tar"], [1536 * 100 + 1024], 100, "1 shard of 1 KiB members")
    aw = Result(Case("awsio"), runs=[_run(1.0, 100, 1024 * 100)])
    raw = Result(Case("awsio-raw"), runs=[_run(1.0, 1, 1536 * 100 + 1024)])
    rows = {r["loader"]: r for r in report.rows([aw, raw], manifest, unit="MiB")}
    assert rows["awsio-raw"]["ratio"] == pytest.approx(1.0)
    assert rows["awsio"]["rate"] == pytest.approx(rows["awsio-raw"]["rate"])


def test_awsio_modules_imported_before_the_clock():
    # Every peer's library is imported untimed (IMPORTS / setup); awsio's dataset and pipeline
    # modules were imported inside make(), on awsio's clock only.
    code = ("import sys\nfrom awsio.bench import worker\nfrom awsio.bench.peers import awsio_peer as m\n"
            "import importlib\n[importlib.import_module(n) for k in ('tar', 'images') for n in worker._IMPORTS[k]]\n"
            "[importlib.import_module(n) for n in m.IMPORTS]\n"
            "before = set(sys.modules)\n"
            "import awsio.dataset, awsio.pipeline, awsio.decode\n"
            "print(sorted(n for n in set(sys.modules) - before if n.startswith('awsio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "[]", out.stdout


def test_count_reads_a_pipeline_batch_of_bytes():
    # awsio's pipeline batches JPEG bytes (decode off) as a tuple of bytes, not a list: its bytes
    # were counted as 0, so its pass was never compared with the others'.
    from awsio.bench.worker import count

    assert count(((b"12", b"3"), (0, 1))) == (2, 3)


def test_memory_and_awsio_batches_without_decode_match_the_peers():
    # decode off: the peers parse the class to an int (a label tensor per batch); awsio and the
    # in-memory ceiling handed out the class's bytes untouched, less work than the others.
    torch = pytest.importorskip("torch")
    from awsio.bench.peers import memory
    from awsio.bench.worker import count

    recs = [r for i in range(5) for r in (("s3://b/s0.tar", f"{i:07d}.cls", str(i % 3).encode()),
                                          ("s3://b/s0.tar", f"{i:07d}.jpg", b"j" * 10))]
    job = Job(peer="memory", kind="images", urls=["s3://b/s0.tar"], sizes=[1], items=5, endpoint=None,
              region="us-east-1", batch_size=4, decode=False)
    job.state = recs
    batches = list(memory.make(job))
    assert [count(b) for b in batches] == [(4, 40), (1, 10)]
    assert all(isinstance(b[1], torch.Tensor) and b[1].dtype == torch.int64 for b in batches)


def test_server_cpu_not_charged_to_a_loader_that_reads_in_its_setup():
    # The in-memory ceiling reads every record in its untimed setup(): the server's CPU time of
    # that run is no cost of its (timed) loading, and was shown as its server CPU s/GiB.
    manifest = Manifest("images", ["s3://b/k"], [1 << 30], 100, "test")
    mem = Result(Case("memory"), runs=[_run(1.0, 100, 0)])
    aw = Result(Case("awsio"), runs=[_run(1.0, 100, 0)])
    mem.runs[0].server_cpu_s = aw.runs[0].server_cpu_s = 2.0
    rows = {r["loader"]: r for r in report.rows([aw, mem], manifest)}
    assert rows["awsio"]["server_cpu_s_per_gib"] == 2.0
    assert rows["memory"]["server_cpu_s_per_gib"] is None


def test_a_runs_endpoint_wins_over_the_shells_s3_endpoint(monkeypatch):
    """The warm-up sends each case through the counting proxy by its endpoint: a shell's
    AWS_ENDPOINT_URL_S3 (which awsio and boto3 prefer to AWS_ENDPOINT_URL) took the run past the
    proxy, so its requests were never counted."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1/elsewhere")
    seen: dict[str, str] = {}

    def fake_run(cmd, **kw):
        seen.update(kw["env"])
        raise subprocess.TimeoutExpired(cmd, 1)

    monkeypatch.setattr(subprocess, "run", fake_run)
    engine = Engine(_Endpoint(), Manifest("objects", ["s3://b/k"], [10], 1, "one object"), rounds=1, min_bytes=0)
    case = Case("boto3", 0)
    engine._spawn(engine._job(case, endpoint="http://127.0.0.1:2"), case)
    assert seen["AWS_ENDPOINT_URL"] == "http://127.0.0.1:2" and "AWS_ENDPOINT_URL_S3" not in seen
