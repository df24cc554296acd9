"""The original S3 plugin's behaviour behind ``awsio.python.lib.io.s3.s3dataset``, next to what
the main API does instead (in memory, and moto where the S3Client listing matters)."""

from __future__ import annotations

import gzip
import inspect
import io
import pickle
import random
import zipfile
from collections import Counter
from typing import Any

import pytest
import torch
from test_archives import MemoryClient, make_tar, samples

import awsio.source as srcmod
from awsio.dataset import S3Dataset, S3IterableDataset, ShuffleDataset
from awsio.errors import ArchiveError, AwsioError, EmptyPrefixError, NoSuchKeyError
from awsio.python.lib.io.s3 import s3dataset as old
from awsio.s3.client import S3Client, file_exists, get_file_size, list_files
from awsio.world import World

B = "s3://bkt/"


def empty_message(url: str) -> str:
    return f"The directory {url} does not contain any objects."


def a_zip() -> tuple[bytes, list[tuple[str, bytes]]]:
    """A zip with directory entries and a metadata member; what the original's zipdata yields."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/", b"")
        zf.writestr("d/a.cls", b"1")
        zf.writestr("d/a.jpg", b"jpeg a" * 50)
        zf.writestr("e/", b"")
        zf.writestr("__meta__.json", b"{}")
        zf.writestr("e/b.cls", b"2")
    raw = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = [(n, zf.read(n)) for n in zf.namelist()]
    return raw, names


# -- 1. empty prefix ---------------------------------------------------------------------------
def test_empty_prefix_compat_assertion_with_the_original_words() -> None:
    client = MemoryClient({f"{B}full/a.txt": b"a"})
    for cls in (old.S3IterableDataset, old.S3Dataset):
        for url in (f"{B}empty/", f"{B}empty"):
            with pytest.raises(AssertionError) as info:
                cls(url, client=client)
            assert str(info.value) == empty_message(url)
        with pytest.raises(AssertionError, match=empty_message(f"{B}empty/")):
            cls([f"{B}full/", f"{B}empty/"], client=client)


def test_empty_prefix_main_api_typed_error_or_allow_empty() -> None:
    client = MemoryClient({f"{B}full/a.txt": b"a"})
    for cls in (S3IterableDataset, S3Dataset):
        for url in (f"{B}empty/", f"{B}nothing-here"):
            with pytest.raises(EmptyPrefixError) as info:
                cls(url, client=client)
            err = info.value
            assert isinstance(err, FileNotFoundError) and isinstance(err, AwsioError)
            assert empty_message(url) in str(err) and err.url == url
            again = pickle.loads(pickle.dumps(err))
            assert type(again) is EmptyPrefixError and again.url == url
        ds = cls([f"{B}empty/", f"{B}full/"], client=client, allow_empty=True)
        assert ds.urls == [f"{B}full/a.txt"]
        assert len(cls(f"{B}empty/", client=client, allow_empty=True).urls) == 0
    assert list(S3IterableDataset(f"{B}empty/", client=client, allow_empty=True)) == []


# -- 2. folder markers -------------------------------------------------------------------------
@pytest.fixture
def markers(moto_config: Any, moto_bucket: str) -> tuple[S3Client, str]:
    client = S3Client(moto_config)
    base = f"s3://{moto_bucket}/m/"
    for key in ("", "sub/", "only/"):
        client.put(base + key, b"")
    client.put(f"{base}sub/a.txt", b"a")
    client.put(f"{base}b.txt", b"b")
    return client, base


def test_folder_markers_skipped_everywhere(markers: tuple[S3Client, str]) -> None:
    client, base = markers
    files = [f"{base}b.txt", f"{base}sub/a.txt"]
    assert [i.url for i in client.list(base)] == files
    assert list_files(base, client.config) == files == old.list_files(base, client.config)
    expected = [(f"{base}b.txt", b"b"), (f"{base}sub/a.txt", b"a")]
    for url in (base, base.rstrip("/")):
        assert list(S3IterableDataset(url, client=client)) == expected
        assert list(old.S3IterableDataset(url, client=client)) == expected
        for cls in (S3Dataset, old.S3Dataset):
            ds = cls(url, client=client)
            assert [ds[i] for i in range(len(ds))] == expected
    with pytest.raises(EmptyPrefixError):
        S3IterableDataset(f"{base}only/", client=client)
    with pytest.raises(AssertionError, match=empty_message(f"{base}only/")):
        old.S3IterableDataset(f"{base}only/", client=client)


# -- 3. zip directory entries ------------------------------------------------------------------
def test_zip_directory_entries_on_the_compat_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    raw, names = a_zip()
    client = MemoryClient({f"{B}z/x.zip": raw})
    assert list(old.zipdata(raw)) == names
    assert ("d/", b"") in names and ("__meta__.json", b"{}") in names
    assert list(old.S3IterableDataset(f"{B}z/x.zip", client=client)) == names
    files = [(n, d) for n, d in names if not n.endswith("/") and not n.startswith("__")]
    assert list(S3IterableDataset(f"{B}z/x.zip", client=client)) == files
    # split across workers, every entry still comes exactly once
    ds = old.S3IterableDataset(f"{B}z/x.zip", client=client)
    got: Counter[tuple[str, bytes]] = Counter()
    for w in range(3):
        monkeypatch.setattr(srcmod, "current_world", lambda w=w: World(0, 1, w, 3))
        got.update(ds)
    assert got == Counter(names)


# -- 4. prefix semantics -----------------------------------------------------------------------
def test_raw_prefix_on_compat_folder_on_main_api() -> None:
    objs = {f"{B}p/test/a.jpg": b"a", f"{B}p/test_x.jpg": b"x", f"{B}p/testing/c.jpg": b"c",
            f"{B}p/other.jpg": b"o"}
    client = MemoryClient(objs)
    raw = [f"{B}p/test/a.jpg", f"{B}p/test_x.jpg", f"{B}p/testing/c.jpg"]
    assert old.S3IterableDataset(f"{B}p/test", client=client).urls_list == raw
    assert old.S3Dataset(f"{B}p/test", client=client).urls_list == raw
    assert [u for u, _ in old.S3IterableDataset(f"{B}p/test", client=client)] == raw
    assert S3IterableDataset(f"{B}p/test", client=client).urls == [f"{B}p/test/a.jpg"]
    assert S3Dataset(f"{B}p/test", client=client).urls == [f"{B}p/test/a.jpg"]


# -- 5. missing objects ------------------------------------------------------------------------
def test_missing_object_compat_fails_in_the_constructor() -> None:
    client = MemoryClient({f"{B}p/here.jpg": b"h"})
    for cls in (old.S3IterableDataset, old.S3Dataset):
        for url in (f"{B}p/missing.jpg", f"{B}p/missing.tar"):
            with pytest.raises(AssertionError) as info:
                cls([f"{B}p/here.jpg", url], client=client)
            assert str(info.value) == empty_message(url)


def test_missing_object_main_api_file_not_found_by_the_first_iteration() -> None:
    client = MemoryClient({f"{B}p/here.jpg": b"h", f"{B}p/s.tar": make_tar(samples(1))})
    for url in (f"{B}p/missing.jpg", f"{B}p/missing.tar", f"{B}p/missing.zip"):
        with pytest.raises(FileNotFoundError) as info:  # archives when indexed (made), objects when read
            list(S3IterableDataset([f"{B}p/here.jpg", url], client=client))
        assert isinstance(info.value, NoSuchKeyError) and info.value.url == url
    mapped = S3Dataset([f"{B}p/here.jpg", f"{B}p/missing.jpg"], client=client)
    with pytest.raises(NoSuchKeyError, match="missing.jpg"):
        mapped[1]
    with pytest.raises(EmptyPrefixError, match=empty_message(f"{B}p/missing")):
        S3IterableDataset(f"{B}p/missing", client=client)


def test_missing_object_main_api_through_dataloader_workers() -> None:
    client = MemoryClient({f"{B}p/{i}.jpg": b"x" for i in range(4)})
    ds = S3IterableDataset([f"{B}p/{{0..3}}.jpg", f"{B}p/missing.jpg"], client=client)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    with pytest.raises(FileNotFoundError) as info:
        list(loader)
    assert info.value.url == f"{B}p/missing.jpg"  # type: ignore[attr-defined]


# -- 7. signatures and the rest of the original's surface ----------------------------------------
def test_original_signatures() -> None:
    def params(fn: Any) -> list[tuple[str, Any]]:
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()
                if p.kind is not p.KEYWORD_ONLY]

    empty = inspect.Parameter.empty
    assert params(old.S3IterableDataset) == [("urls_list", empty), ("shuffle_urls", False)]
    assert params(old.S3Dataset) == [("urls_list", empty)]
    assert params(old.ShuffleDataset) == [("dataset", empty), ("buffer_size", empty)]
    assert params(old.tardata) == [("fileobj", empty), ("skip_meta", r"__[^/]*__($|/)"),
                                   ("handler", old.reraise_exception)]
    assert params(old.zipdata) == [("fileobj", empty), ("handler", old.reraise_exception)]
    assert params(old.list_files)[0] == params(old.file_exists)[0] == params(old.get_file_size)[0] \
        == ("url", empty)
    assert params(old.reraise_exception) == [("exn", empty)]
    with pytest.raises(KeyError, match="boom"):
        old.reraise_exception(KeyError("boom"))


def test_urls_list_shuffled_list_epoch_and_len() -> None:
    objs = {f"{B}s/{i:02d}.bin": bytes([i]) for i in range(20)}
    objs[f"{B}s/t.tar"] = make_tar(samples(3))
    objs[f"{B}s/g.tar.gz"] = gzip.compress(make_tar(samples(1)))
    client = MemoryClient(objs)
    ds = old.S3IterableDataset(f"{B}s/", True, client=client)
    assert ds.urls_list == sorted(objs) and len(ds) == len(objs) == 22
    assert ds.epoch == 0
    for epoch in (0, 1, 7):
        ds.set_epoch(epoch)
        assert ds.epoch == epoch
        state = random.getstate()
        random.seed(epoch)  # the original: random.seed(self.epoch); random.sample(...)
        want = random.sample(ds.urls_list, len(ds.urls_list))
        random.setstate(state)
        assert ds.shuffled_list == want
        got = [n for n, _ in ds]
        # plain objects by URL, tar members by name, .tar.gz as one whole object (as the original)
        order = [n for n in got if n.startswith(B)]
        assert order == [u for u in want if not u.endswith(".tar")]
        assert sum(1 for n in got if not n.startswith(B)) == 6
    ds.epoch = 3
    assert ds.epoch == 3 and ds.shuffled_list == random.Random(3).sample(ds.urls_list, 22)
    assert old.S3IterableDataset(f"{B}s/", client=client).shuffled_list == sorted(objs)
    mapped = old.S3Dataset(f"{B}s/", client=client)
    assert mapped.urls_list == sorted(objs) and len(mapped) == 22
    assert mapped[0] == (sorted(objs)[0], objs[sorted(objs)[0]])
    shuffled = old.ShuffleDataset(old.S3IterableDataset(f"{B}s/", client=client), 4)
    assert isinstance(shuffled, ShuffleDataset) and Counter(shuffled) == Counter(
        old.S3IterableDataset(f"{B}s/", client=client))


def test_an_existing_object_is_taken_without_listing() -> None:
    client = MemoryClient({f"{B}o/a": b"a", f"{B}o/ab": b"ab"})
    ds = old.S3IterableDataset(f"{B}o/a", client=client)
    assert ds.urls_list == [f"{B}o/a"] and not any(c[0] == "list" for c in client.calls)


def test_tardata_and_zipdata() -> None:
    members = samples(2)
    raw = make_tar(members + [("__meta__", b"m")])
    assert list(old.tardata(raw)) == members == list(old.tardata(gzip.compress(raw)))
    assert list(old.tardata(io.BytesIO(raw))) == members
    assert list(old.tardata(raw, skip_meta=r".*\.cls$")) == [m for m in members if m[0].endswith(".jpg")]
    broken = raw[:1700]  # the second member cut short
    with pytest.raises(ArchiveError):
        list(old.tardata(broken))
    seen: list[BaseException] = []
    assert list(old.tardata(broken, handler=seen.append)) == members[:1] and len(seen) == 1
    with pytest.raises(ArchiveError):
        list(old.zipdata(b"not a zip"))
    assert list(old.zipdata(b"not a zip", handler=seen.append)) == [] and len(seen) == 2


def test_module_helpers_return_the_original_types(moto_config: Any, moto_bucket: str) -> None:
    client = S3Client(moto_config)
    client.put(f"s3://{moto_bucket}/h/a.txt", b"abc")
    assert old.list_files(f"s3://{moto_bucket}/h/", moto_config) == [f"s3://{moto_bucket}/h/a.txt"]
    assert type(old.list_files(f"s3://{moto_bucket}/h/", moto_config)) is list
    assert old.file_exists(f"s3://{moto_bucket}/h/a.txt", moto_config) is True
    assert old.file_exists(f"s3://{moto_bucket}/h/b.txt", moto_config) is False
    size = old.get_file_size(f"s3://{moto_bucket}/h/a.txt", moto_config)
    assert size == 3 and type(size) is int
    assert file_exists is old.file_exists and get_file_size is old.get_file_size


def test_tardata_skips_what_the_original_skipped_and_nothing_else() -> None:
    """The original plugin's tardata skipped a top-level ``__x__`` and names matching
    ``skip_meta`` (``__...__`` then the end or a slash) only: ``__meta__.json``,
    ``pkg/__init__.py`` and ``d/__key__.txt`` were yielded, so they are here."""
    from test_archives import make_tar

    from awsio.python.lib.io.s3.s3dataset import tardata

    raw = make_tar([("__meta__.json", b"{}"), ("pkg/__init__.py", b"x = 1"), ("d/__key__.txt", b"k"),
                    ("a.jpg", b"img"), ("__meta__", b"m"), ("__dir__/x.txt", b"d")])
    assert [n for n, _ in tardata(raw)] == ["__meta__.json", "pkg/__init__.py", "d/__key__.txt", "a.jpg"]
    assert [n for n, _ in tardata(raw, skip_meta=None)] == ["__meta__.json", "pkg/__init__.py", "d/__key__.txt",
                                                           "a.jpg", "__dir__/x.txt"]
