"""S3IterableDataset / S3Dataset / ShuffleDataset over an in-memory client (no server)."""

from __future__ import annotations

import gzip
import io
import logging
import pickle
from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_archives import MemoryClient, make_tar, make_zip, samples

import awsio.source as srcmod
from awsio.dataset import S3Dataset, S3IterableDataset, ShuffleDataset
from awsio.errors import ArchiveError, ConfigError, NoSuchKeyError
from awsio.world import World

B = "s3://bkt/"


def shards(n: int, per: list[int] | int = 4, kind: str = "tar") -> dict[str, bytes]:
    out = {}
    for i in range(n):
        k = per[i] if isinstance(per, list) else per
        members = [(f"sh{i}/{name}", data) for name, data in samples(k, 200)]
        raw = make_tar(members)
        if kind == "tgz":
            out[f"{B}data/train-{i:03d}.tar.gz"] = gzip.compress(raw)
        elif kind == "zip":
            out[f"{B}data/train-{i:03d}.zip"] = make_zip(members)
        else:
            out[f"{B}data/train-{i:03d}.tar"] = raw
    return out


def run_world(ds: S3IterableDataset, ranks: int, workers: int, monkeypatch: pytest.MonkeyPatch,
              epoch: int = 0) -> list[list[tuple[str, bytes]]]:
    """Iterate as every (rank, worker) slot would; returns the items of each slot."""
    out = []
    for r in range(ranks):
        for w in range(workers):
            monkeypatch.setattr(srcmod, "current_world", lambda r=r, w=w: World(r, ranks, w, workers))
            ds.set_epoch(epoch)
            out.append(list(ds))
    return out


def test_plain_objects_prefix_folder_and_braces() -> None:
    objs = {f"{B}files/{i:03d}.bin": bytes([i]) * 10 for i in range(20)}
    objs[f"{B}files2/x.bin"] = b"not in the folder"
    client = MemoryClient(objs)
    for url in (f"{B}files/", f"{B}files", f"{B}files/{{000..019}}.bin"):
        ds = S3IterableDataset(url, client=client)
        assert list(ds) == [(u, d) for u, d in sorted(objs.items()) if "/files/" in u]
        assert len(ds) == 20
    assert sum(1 for c in client.calls if c[0] == "list") == 2  # braces are not listed
    assert not any(c[0] == "get" and "files2" in c[1] for c in client.calls)
    exact = S3IterableDataset(f"{B}files/003.bin", client=client)
    assert list(exact) == [(f"{B}files/003.bin", objs[f"{B}files/003.bin"])]


def test_tar_members_in_archive_order_and_records() -> None:
    objs = shards(2)
    ds = S3IterableDataset(f"{B}data/", client=MemoryClient(objs))
    it = iter(ds)
    label_name, label = next(it)
    image_name, _ = next(it)
    assert (label_name, int(label)) == ("sh0/d/s0000.cls", 0) and image_name == "sh0/d/s0000.jpg"
    recs = list(ds.iter_records())
    assert len(recs) == 16 and recs[0].source == f"{B}data/train-000.tar"
    assert recs[-1].source == f"{B}data/train-001.tar"
    assert len(ds) == 8  # samples (from the shards' indexes)


@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
@pytest.mark.parametrize("ranks,workers,n", [(1, 1, 3), (2, 2, 8), (2, 3, 2), (3, 4, 1)])
def test_split_exactly_once(kind: str, ranks: int, workers: int, n: int,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    objs = shards(n, [3 + i for i in range(n)], kind)
    client = MemoryClient(objs)
    ds = S3IterableDataset(f"{B}data/", client=client, shuffle_urls=True, seed=7)
    everything = [m for s in run_world(ds, 1, 1, monkeypatch) for m in s]
    client.calls.clear()
    parts = run_world(ds, ranks, workers, monkeypatch)
    assert Counter(m for p in parts for m in p) == Counter(everything)
    assert len(everything) == 2 * sum(3 + i for i in range(n))
    if n < ranks * workers:
        # few shards: every worker gets part of one (when there are enough samples)
        assert all(parts) or len(everything) // 2 < ranks * workers
        for p in parts:  # ... and never half a sample
            names = [m[0] for m in p]
            assert all(a.endswith(".cls") and b.endswith(".jpg") and a[:-4] == b[:-4]
                       for a, b in zip(names[::2], names[1::2]))
        if kind == "tar":  # workers read byte ranges: no shard is streamed whole by two workers
            opened = [c for c in client.calls if c[0] == "open"]
            assert len(opened) == len(set(opened)) <= n


@pytest.mark.parametrize("mode", ["drop", "repeat"])
def test_equal_work_equal_counts(mode: str, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    objs = shards(3, [5, 1, 3])  # 9 samples over 2 ranks x 2 workers
    ds = S3IterableDataset(f"{B}data/", client=MemoryClient(objs), equal_work=mode)
    parts = run_world(ds, 2, 2, monkeypatch)
    per_rank = [(len(parts[0]) + len(parts[1])) // 2, (len(parts[2]) + len(parts[3])) // 2]
    assert per_rank[0] == per_rank[1] == (4 if mode == "drop" else 5)
    monkeypatch.setattr(srcmod, "current_world", lambda: World(0, 2, 0, 1))
    assert len(ds) == per_rank[0]


def test_shuffle_urls_per_epoch_same_on_every_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = {f"{B}o/{i:03d}": bytes([i]) for i in range(40)}
    ds = S3IterableDataset(f"{B}o/", client=MemoryClient(objs), shuffle_urls=True, seed=3)
    e0 = [n for p in run_world(ds, 2, 1, monkeypatch, epoch=0) for n, _ in p]
    e0_again = [n for p in run_world(ds, 2, 1, monkeypatch, epoch=0) for n, _ in p]
    e1 = [n for p in run_world(ds, 2, 1, monkeypatch, epoch=1) for n, _ in p]
    assert e0 == e0_again != e1 and sorted(e0) == sorted(e1) == sorted(objs)
    monkeypatch.setattr(srcmod, "current_world", lambda: World())
    ds.set_epoch(5)
    first, second = [n for n, _ in ds], [n for n, _ in ds]  # epoch advances on its own
    assert first != second and ds.epoch == 7


def test_bad_shard_policies(caplog: Any) -> None:
    objs = shards(3)
    bad = f"{B}data/train-001.tar"
    objs[bad] = objs[bad][:1024 + 600]  # truncated inside its second member
    client = MemoryClient(objs)
    with pytest.raises(ArchiveError) as err:
        list(S3IterableDataset(f"{B}data/", client=client))
    assert err.value.url == bad
    ds = S3IterableDataset(f"{B}data/", client=client, handler="warn")
    got = list(ds)
    assert ds.stats.total == 1 and bad in ds.stats.examples[0] and "skipping" in caplog.text
    assert len(got) == 16  # the shard could not be indexed: all of it is skipped, and counted
    seen: list[BaseException] = []
    ds = S3IterableDataset(f"{B}data/", client=client, handler=lambda e: seen.append(e) or True)
    list(ds)
    assert len(seen) == 1
    with pytest.raises(ConfigError):
        S3IterableDataset(f"{B}data/", client=client, handler="ignore")


def test_missing_plain_object_skip_keeps_the_rest() -> None:
    objs = {f"{B}p/{i}": b"x" for i in range(5)}
    client = MemoryClient(objs)
    ds = S3IterableDataset([f"{B}p/{{0..4}}", f"{B}p/{{7..7}}"], client=client, handler="skip")
    assert len(list(ds)) == 5 and ds.stats.total == 1
    with pytest.raises(NoSuchKeyError):
        list(S3IterableDataset(f"{B}p/{{6..7}}", client=client))


def test_map_style_dataset_and_getitems() -> None:
    objs = {f"{B}m/{i:02d}": bytes([i]) for i in range(10)}
    ds = S3Dataset(f"{B}m/", client=MemoryClient(objs))
    assert len(ds) == 10 and ds[3] == (f"{B}m/03", b"\x03")
    assert ds.__getitems__([1, 5]) == [(f"{B}m/01", b"\x01"), (f"{B}m/05", b"\x05")]
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=list)
    assert [u for batch in loader for u, _ in batch] == [f"{B}m/{i:02d}" for i in range(1, 10, 2)]


def test_shuffle_dataset_bounded_and_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = {f"{B}s/{i:03d}": bytes([i]) for i in range(50)}
    base = S3IterableDataset(f"{B}s/", client=MemoryClient(objs))
    sd = ShuffleDataset(base, 8, seed=1)
    sd.set_epoch(0)
    a = list(sd)
    sd.set_epoch(0)
    assert a == list(sd) and sorted(a) == sorted(objs.items()) and a != sorted(a)
    assert len(sd) == 50


def test_pickles_and_dataloader_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = shards(3, [4, 2, 6])
    ds = S3IterableDataset(f"{B}data/", client=MemoryClient(objs))
    clone = pickle.loads(pickle.dumps(ds))
    assert list(clone) == list(ds)
    expected = Counter(list(ds))
    for workers in (0, 2, 4):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                             multiprocessing_context="fork" if workers else None)
        assert Counter((n, bytes(d)) for n, d in loader) == expected


def test_compat_import_path() -> None:
    from awsio.python.lib.io.s3 import s3dataset as old

    assert issubclass(old.S3IterableDataset, S3IterableDataset) and issubclass(old.S3Dataset, S3Dataset)
    members = samples(2)
    raw = make_tar(members)
    assert list(old.tardata(raw)) == members == list(old.tardata(gzip.compress(raw)))
    assert list(old.zipdata(make_zip(members))) == [("dir/", b"")] + members  # as the original
    assert callable(old.list_files) and callable(old.file_exists) and callable(old.get_file_size)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per=st.lists(st.integers(0, 6), min_size=1, max_size=4), ranks=st.integers(1, 3),
       workers=st.integers(1, 3), shuffle=st.booleans(), kind=st.sampled_from(["tar", "zip"]))
def test_split_property_end_to_end(per: list[int], ranks: int, workers: int, shuffle: bool, kind: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    objs = shards(len(per), per, kind)
    ds = S3IterableDataset(f"{B}data/", client=MemoryClient(objs), shuffle_urls=shuffle, seed=11)
    whole = Counter(m for p in run_world(ds, 1, 1, monkeypatch, epoch=3) for m in p)
    parts = run_world(ds, ranks, workers, monkeypatch, epoch=3)
    assert Counter(m for p in parts for m in p) == whole and sum(whole.values()) == 2 * sum(per)


def test_archive_override_index_len_and_sidecars_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    from awsio.archives.index import build_index, index_url, write_index

    objs = shards(2, [3, 4])
    client = MemoryClient(objs)
    first = f"{B}data/train-000.tar"
    write_index(build_index(io.BytesIO(objs[first])), index_url(first), client=client)
    plain = S3IterableDataset(f"{B}data/", client=client, archives={})
    assert list(plain) == sorted(objs.items())  # the sidecar is not listed as an object
    monkeypatch.setattr(srcmod, "current_world", lambda: World())
    indexed = S3IterableDataset(f"{B}data/", client=client)
    assert len(indexed) == 7 == len(list(indexed)) // 2
    renamed = {f"{B}x/a.shard": objs[first]}
    custom = S3IterableDataset(f"{B}x/", client=MemoryClient(renamed), archives={".shard": "tar"})
    assert [n for n, _ in custom][:2] == ["sh0/d/s0000.cls", "sh0/d/s0000.jpg"]


def test_a_shard_shorter_than_its_index_is_an_error_not_fewer_samples() -> None:
    """Not listed (a brace pattern: no size known), a shard rewritten shorter than its sidecar
    index says must fail when read, never yield fewer samples without a word."""
    from awsio.archives.index import build_index, index_url, write_index

    members = [(f"k{i}.bin", bytes([i]) * 3000) for i in range(8)]
    full = make_tar(members)
    url = f"{B}short/only.tar"
    client = MemoryClient({url: make_tar(members[:4])})
    write_index(build_index(io.BytesIO(full)), index_url(url), client=client)
    with pytest.raises(ArchiveError) as err:
        list(S3IterableDataset(f"{B}short/{{only.tar}}", client=client))
    assert err.value.url == url


def test_tar_members_are_delivered_in_the_pieces_the_reader_filled() -> None:
    """Tar ranges are asked for in pieces (one per member): each sample's bytes are the very
    object the reader wrote into, never copied out of a larger buffer."""
    from awsio.s3.backend import cut_body

    class PiecesClient(MemoryClient):
        def __init__(self, objects: dict[str, bytes]) -> None:
            super().__init__(objects)
            self.pieces: dict[int, bytes] = {}

        def get_many(self, items: Any, ordered: bool = True, ramp: bool = False) -> Any:
            for item in items:
                data = self.get_range(*item[:3])
                if len(item) >= 5 and item[4] is not None:
                    data = cut_body(data, item[4])
                    self.pieces.update((id(p), p) for p in data)
                yield str(item[0]), data

    objs = shards(2, per=5)
    client = PiecesClient(objs)
    recs = list(S3IterableDataset(f"{B}data/", client=client).iter_records())
    assert len(recs) == 20
    assert all(client.pieces.get(id(r.data)) is r.data for r in recs)
    plain = list(S3IterableDataset(f"{B}data/", client=MemoryClient(objs)).iter_records())
    assert recs == plain


# -- a shard that differs from its index, failures in tar.gz streams, skipped members counted once --
def _member(name: str, data: bytes = b"", typeflag: bytes = b"0", linkname: str = "") -> bytes:
    """One tar member (header + padded data), as a writer puts it in the middle of a stream."""
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = len(data), typeflag, linkname
    return info.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


_END = b"\0" * 1024


@pytest.mark.parametrize("kind", ["tar", "tgz"])
@pytest.mark.parametrize("change", ["shorter", "longer"])
def test_a_shard_that_differs_from_its_index_is_an_error(kind: str, change: str) -> None:
    """Not listed (a brace pattern: no size known), a shard rewritten shorter or longer than its
    sidecar index says fails when read, tar and tar.gz alike: never fewer samples without a word."""
    from awsio.archives.index import build_index, index_url, write_index
    from awsio.errors import IntegrityError

    members = [(f"k{i}.bin", bytes([i]) * 3000) for i in range(8)]
    indexed, actual = (members, members[:4]) if change == "shorter" else (members[:4], members)
    pack = (lambda m: gzip.compress(make_tar(m))) if kind == "tgz" else make_tar
    url = f"{B}{change}/only.{kind}"
    client = MemoryClient({url: pack(actual)})
    write_index(build_index(io.BytesIO(pack(indexed)), gzip=kind == "tgz"), index_url(url), client=client)
    with pytest.raises((ArchiveError, IntegrityError)) as err:
        list(S3IterableDataset(f"{B}{change}/{{only.{kind}}}", client=client))
    assert err.value.url == url


def test_a_member_whose_size_differs_from_the_index_is_an_error() -> None:
    """Same names, same offsets, same shard size, another member size: the header walk must
    compare sizes too (the cut path already does)."""
    from awsio.archives.index import build_index, index_url

    old = make_tar([("a.jpg", b"A" * 100), ("b.jpg", b"B" * 100)])
    new = make_tar([("a.jpg", b"X" * 200), ("b.jpg", b"B" * 100)])
    assert len(old) == len(new)
    url = f"{B}s.tar"
    client = MemoryClient({url: new, index_url(url): build_index(io.BytesIO(old)).to_json().encode()})
    with pytest.raises(ArchiveError) as err:
        list(S3IterableDataset(url, client=client))
    assert err.value.url == url


def test_a_failure_inside_a_tgz_stream_skips_only_what_failed() -> None:
    """After a read failure inside a tar.gz stream (after the client's retries) the next fetch of
    that shard reads again: every sample is delivered or counted."""
    from awsio.errors import ServerError

    n = 2100  # more than one planning block: the shard is read in two fetches
    url = f"{B}x.tgz"
    raw = b"".join(_member(f"d/s{i:05d}.bin", i.to_bytes(4, "big")) for i in range(n)) + _END

    class Flaky(MemoryClient):
        fail_at: int | None = None

        def get_range(self, u: str, start: int, end: int | None, *, size: int | None = None, if_match: str | None = None) -> bytes:
            if u == url and self.fail_at is not None and start >= self.fail_at:
                self.fail_at = None  # fails once, then works again
                raise ServerError("injected 500", url=u, status=500, code="InternalError")
            return super().get_range(u, start, end, size=size)

    client = Flaky({url: gzip.compress(raw)})
    ds = S3IterableDataset(url, client=client, handler="skip", chunk_size=4096)
    client.fail_at = 8192
    got = [name for name, _ in ds]
    assert ds.stats.counts[("read", "ServerError")] > 0
    assert len(got) + ds.stats.total == n
    assert got == sorted(set(got))  # in order, none twice


@pytest.mark.parametrize("suffix", [".tar", ".tgz"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_skipped_members_are_counted_wherever_they_are(suffix: str, where: str) -> None:
    """A symlink and an unsupported member are counted, before the first sample, between samples
    or after the last one (a brace pattern: the shard's size is not listed)."""
    odd = _member("d/sparse.bin", b"S" * 600, typeflag=b"S") + _member("d/ln.jpg", typeflag=b"2", linkname="x")
    a, b = _member("d/a.jpg", b"A" * 10), _member("d/b.jpg", b"B" * 10)
    raw = {"first": odd + a + b, "middle": a + odd + b, "last": a + b + odd}[where] + _END
    url = f"{B}{where}{suffix}"
    ds = S3IterableDataset(f"{B}{{{where}{suffix}}}",
                           client=MemoryClient({url: gzip.compress(raw) if suffix == ".tgz" else raw}))
    assert [name for name, _ in ds] == ["d/a.jpg", "d/b.jpg"]
    assert ds.stats.counts == Counter({("read", "symlink"): 1, ("read", "unsupported member type"): 1})


def test_tgz_skipped_members_are_counted_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever walks past a link in a tar.gz (the index scan, the epoch's read, the other ranks'
    readers), it is counted once in the epoch, by the reader of the sample it belongs to."""
    raw = (_member("d/a.jpg", b"A" * 10) + _member("d/ln.jpg", typeflag=b"2", linkname="x")
           + b"".join(_member(f"d/s{i}.jpg", bytes([i]) * 10) for i in range(8)) + _END)
    url = f"{B}links.tgz"
    client = MemoryClient({url: gzip.compress(raw)})
    shuffled = S3IterableDataset(url, client=client, shuffle_urls=True, seed=1)
    assert len(list(shuffled)) == 9
    assert sum(c[0] == "open" for c in client.calls) == 2  # the scan, then one shuffled read
    assert shuffled.stats.counts == Counter({("read", "symlink"): 1})
    total: Counter[tuple[str, str]] = Counter()
    for rank in range(2):
        monkeypatch.setattr(srcmod, "current_world", lambda rank=rank: World(rank, 2, 0, 1))
        ds = S3IterableDataset(url, client=client)
        list(ds)
        total.update(ds.stats.counts)
    assert total == Counter({("read", "symlink"): 1})


def test_tgz_samples_are_numbered_by_the_index_past_a_hardlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hardlink of its own sample is in a tar.gz's index but cannot be read from the stream
    (skipped, counted): the samples after it keep their index numbers, so ranks split them exactly."""
    raw = (_member("d/a.jpg", b"A" * 10) + _member("d/x.jpg", typeflag=b"1", linkname="d/a.jpg")
           + b"".join(_member(f"d/s{i}.jpg", bytes([i]) * 10) for i in range(5)) + _END)
    url = f"{B}hardlink.tgz"
    client = MemoryClient({url: gzip.compress(raw)})
    got: list[str] = []
    total: Counter[tuple[str, str]] = Counter()
    for rank in range(2):
        monkeypatch.setattr(srcmod, "current_world", lambda rank=rank: World(rank, 2, 0, 1))
        ds = S3IterableDataset(url, client=client)
        got += [name for name, _ in ds]
        total.update(ds.stats.counts)
    assert sorted(got) == ["d/a.jpg"] + [f"d/s{i}.jpg" for i in range(5)]
    assert total == Counter({("read", "hardlink"): 1})


def test_drop_last_drops_only_the_short_last_batch_of_the_rank() -> None:
    """``drop_last`` drops the rank's last unit when it is short (planned: never read), not a
    batch that is short because a sample in it was skipped: its other samples are delivered."""
    urls = [f"{B}d/o{j:02d}.bin" for j in range(10)]
    objects = {u: u.encode() for u in urls}
    del objects[urls[2]]
    client = MemoryClient(objects)
    ds = S3IterableDataset(urls, client=client, handler="skip")
    pipe = ds.dataproc(batch_size=4, shuffle=False, drop_last=True).map(lambda s: s["__key__"])
    batches = [[key.rsplit("/", 1)[1] for key in b] for b in pipe]
    assert batches == [["o00", "o01", "o03"], ["o04", "o05", "o06", "o07"]]
    assert pipe.stats.counts == Counter({("read", "NoSuchKeyError"): 1})
    assert len(pipe) == 2
    assert not [c for c in client.calls if c[1] in (urls[8], urls[9])]  # the short last unit: not read


def test_a_worker_warns_when_a_unit_yields_no_batch(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """A unit whose samples were all skipped yields no batch: in one of several DataLoader
    workers the next batch takes its turn, so the count-based state is no longer exact. Said."""
    import awsio.pipeline as pipemod

    world = World(0, 1, 0, 2)  # worker 0 of 2: units 0, 2, 4
    monkeypatch.setattr(srcmod, "current_world", lambda: world)
    monkeypatch.setattr(pipemod, "current_world", lambda: world)
    urls = [f"{B}e/o{j:02d}.bin" for j in range(12)]
    objects = {u: b"x" for u in urls[:4] + urls[6:]}  # unit 2 (o04, o05) is missing
    ds = S3IterableDataset(urls, client=MemoryClient(objects), handler="skip")
    pipe = ds.map(lambda s: s["__key__"]).batched(2, collate=list)
    with caplog.at_level("WARNING", logger="awsio.pipeline"):
        assert [[k.rsplit("/", 1)[1] for k in b] for b in pipe] == [["o00", "o01"], ["o08", "o09"]]
    assert "yielded no batch" in caplog.text


@pytest.mark.parametrize("kind", ["tar", "tgz"])
def test_a_shard_replaced_while_it_is_read_is_an_error_not_two_versions(kind: str) -> None:
    """The ranges of a listed shard (and the chunks of a tar.gz stream) ask for the version the
    listing saw (If-Match on its ETag): a shard replaced mid-epoch by one of the same layout is an
    IntegrityError, never samples from both versions."""
    from awsio.errors import IntegrityError

    import random

    def shard(version: int) -> bytes:  # (incompressible: a tar.gz of several chunks)
        raw = make_tar([(f"k{i:03d}.bin", bytes([version]) + random.Random(i).randbytes(2999)) for i in range(40)])
        return gzip.compress(raw) if kind == "tgz" else raw

    url = f"{B}replaced-{kind}/s.{kind}"

    class Replacing(MemoryClient):
        """Replaces the shard after its second ranged read (same names, sizes and offsets)."""

        def get_range(self, u: str, start: int, end: int | None, **kw: Any) -> bytes:
            if u == url and sum(c[:2] == ("get_range", url) for c in self.calls) == 2:
                self.objects[url] = shard(2)
            return super().get_range(u, start, end, **kw)

    client = Replacing({url: shard(1)})
    ds = S3IterableDataset(f"{B}replaced-{kind}/", client=client, chunk_size=16384, prefetch=0)
    with pytest.raises(IntegrityError) as err:
        for _, data in ds:
            assert data[0] == 1
    assert err.value.code == "PreconditionFailed" and err.value.url == url


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_zip_and_tgz_reads_hold_at_most_a_chunk_of_samples(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded for zip and tar.gz shards as for tar: one read holds the samples of
    at most ``chunk_size`` bytes (at least one sample), not every sample of a planning block."""
    import random

    import awsio.reading as reading

    members = [(f"d/s{i:04d}.bin", random.Random(i).randbytes(8 << 10)) for i in range(300)]
    url = f"{B}bounded/a.{'zip' if kind == 'zip' else 'tar.gz'}"
    blob = make_zip(members) if kind == "zip" else gzip.compress(make_tar(members))
    held: list[int] = []
    for name in ("_zip_records", "_tgz_records"):
        original = getattr(reading.ShardReader, name)

        def spy(self: Any, f: Any, original: Any = original) -> Any:
            out = original(self, f)
            held.append(sum(len(r.data) for r in out))
            return out

        monkeypatch.setattr(reading.ShardReader, name, spy)
    ds = S3IterableDataset(url, client=MemoryClient({url: blob}), chunk_size=64 << 10)
    got = [data for _, data in ds]
    assert got == [data for _, data in members]
    assert max(held) <= 64 << 10 and len(held) > 1


def _readers_counts(ds: S3IterableDataset, ranks: int, workers: int,
                    monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    """The skip counts of one epoch summed over every (rank, worker) reader."""
    total: Counter[tuple[str, str]] = Counter()
    for r in range(ranks):
        for w in range(workers):
            monkeypatch.setattr(srcmod, "current_world", lambda r=r, w=w: World(r, ranks, w, workers))
            ds.set_epoch(0)
            list(ds)
            total.update(ds.stats.counts)
    return total


def test_a_shard_that_cannot_be_indexed_is_counted_once_per_epoch_not_per_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank and DataLoader worker used to add the dataset's index skips to its own counts
    (a job of 2 ranks x 2 workers reported one unreadable shard 4 times an epoch)."""
    objs = shards(3)
    bad = f"{B}data/train-001.tar"
    objs[bad] = objs[bad][:1024 + 600]
    ds = S3IterableDataset(f"{B}data/", client=MemoryClient(objs), handler="skip")
    assert _readers_counts(ds, 2, 2, monkeypatch) == Counter({("index", "ArchiveError"): 1})


@pytest.mark.parametrize("suffix", [".tar", ".tgz"])
def test_a_shard_of_only_links_is_counted_not_silent(suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard whose members are all links or unsupported types has no samples, so no reader
    walked it and its members were never counted: they are, once per epoch."""
    odd = (_member("d/sparse.bin", b"S" * 600, typeflag=b"S") + _member("d/ln.jpg", typeflag=b"2", linkname="x")
           + _member("d/hl.jpg", typeflag=b"1", linkname="d/gone.jpg") + _END)
    good = _member("d/a.jpg", b"A" * 10) + _END
    pack = gzip.compress if suffix == ".tgz" else bytes
    client = MemoryClient({f"{B}m/links{suffix}": pack(odd), f"{B}m/ok{suffix}": pack(good)})
    ds = S3IterableDataset(f"{B}m/", client=client)
    assert [name for name, _ in ds] == ["d/a.jpg"]
    expected = Counter({("read", "symlink"): 1, ("read", "hardlink"): 1, ("read", "unsupported member type"): 1})
    assert ds.stats.counts == expected
    assert _readers_counts(ds, 2, 2, monkeypatch) == expected


def test_a_shuffled_epoch_reads_each_tgz_stream_once() -> None:
    """A tar.gz can only be read forwards: a shuffled window that asked for its samples in random
    order reopened and decompressed the stream from its start for every backward step (quadratic:
    8 shards of 60 samples read ~30x their size). Shards are still shuffled and their samples
    interleaved, each stream is read once, and every sample comes exactly once."""
    objs = shards(8, per=60, kind="tgz")
    client = MemoryClient(objs)
    ds = S3IterableDataset(f"{B}data/", client=client, shuffle_urls=True, seed=3)
    client.calls.clear()
    names = [name for name, _ in ds]
    assert sorted(names) == sorted(f"sh{i}/{n}" for i in range(8) for n, _ in samples(60, 200))
    opens = [c for c in client.calls if c[0] == "open"]
    read = sum((c[3] or 0) - c[2] for c in client.calls if c[0] == "get_range")
    assert len(opens) == 8 and read <= sum(len(v) for v in objs.values())
    shard_seq = [n.split("/")[0] for n in names]
    assert shard_seq != sorted(shard_seq)  # samples of the window are still interleaved
    again = S3IterableDataset(f"{B}data/", client=client, shuffle_urls=True, seed=3)
    again.set_epoch(1)
    assert [n for n, _ in again] != names
