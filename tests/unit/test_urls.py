"""The URL layer: brace patterns are bounded, and listed keys (which may contain braces) are
never read as patterns again."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from awsio.dataset import S3Dataset, S3IterableDataset
from awsio.errors import ConfigError, InvalidURLError
from awsio.s3.client import S3Client, list_files
from awsio.s3.url import S3URL, braceexpand, expand_urls, parse_url


def test_huge_pattern_refused_at_once_in_bounded_memory() -> None:
    pattern = "s3://b/x-{0..999999999}.tar"
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(InvalidURLError) as info:
            expand_urls(pattern)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 1 and peak < 1 << 20
    assert info.value.url == pattern
    assert "1,000,000,000 names" in str(info.value) and "10,000,000" in str(info.value)
    assert "AWSIO_MAX_BRACE_NAMES" in str(info.value)
    with pytest.raises(InvalidURLError):
        braceexpand(pattern)


def test_pattern_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(expand_urls("s3://b/{0..999}-{a,b}")) == 2000
    monkeypatch.setenv("AWSIO_MAX_BRACE_NAMES", "1999")
    with pytest.raises(InvalidURLError, match="2,000 names, over the limit of 1,999"):
        expand_urls("s3://b/{0..999}-{a,b}")
    assert len(expand_urls("s3://b/{0..999}-{a,b}", max_names=2000)) == 2000
    with pytest.raises(InvalidURLError, match="over the limit of 10"):
        braceexpand("s3://b/{0..10}", max_names=10)
    monkeypatch.setenv("AWSIO_MAX_BRACE_NAMES", "lots")
    with pytest.raises(ConfigError) as info:
        expand_urls("s3://b/{0..1}")
    assert info.value.field == "AWSIO_MAX_BRACE_NAMES" and info.value.value == "lots"


def test_nested_pattern_counted_while_expanding() -> None:
    # braces that nest cannot be counted up front; the expansion stops at the limit
    assert len(braceexpand("s3://b/{{0..99}x,y}")) == 200
    with pytest.raises(InvalidURLError, match="more than 5 names"):
        braceexpand("s3://b/{{0..99}x,y}", max_names=5)


def test_braces_in_a_key_are_characters_to_the_parser() -> None:
    assert parse_url("s3://b/p/a{1}.txt") == S3URL("b", "p/a{1}.txt")
    assert parse_url("s3://b/p/{0..3}") == S3URL("b", "p/{0..3}")
    # only expand_urls reads patterns, and never in what a listing returned
    assert [str(u) for u in expand_urls("s3://b/p/a{1,2}.txt")] == ["s3://b/p/a1.txt", "s3://b/p/a2.txt"]
    assert expand_urls([S3URL("b", "p/a{1,2}.txt")]) == [S3URL("b", "p/a{1,2}.txt")]


@pytest.fixture
def braced(moto_config: Any, moto_bucket: str, moto_server: str) -> tuple[S3Client, str, dict[str, bytes]]:
    import botocore.session
    from botocore.config import Config

    boto = botocore.session.Session().create_client(
        "s3", endpoint_url=moto_server, region_name=moto_config.region, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
    client = S3Client(moto_config)
    base = f"s3://{moto_bucket}/p/"
    objs = {f"{base}a{{1}}.txt": b"one", f"{base}{{0..999999999}}.bin": b"range",
            f"{base}x}}{{y": b"odd", f"{base}z.txt": b"plain"}
    for url, data in objs.items():
        boto.put_object(Bucket=moto_bucket, Key=url.split("/", 3)[3], Body=data)
    return client, base, objs


def test_listed_keys_with_braces_are_read_as_keys(braced: tuple[S3Client, str, dict[str, bytes]]) -> None:
    client, base, objs = braced
    expected = sorted(objs.items())
    assert list(S3IterableDataset(base, client=client)) == expected
    ds = S3Dataset(base, client=client)
    assert [ds[i] for i in range(len(ds))] == expected
    assert ds.__getitems__(range(len(ds))) == expected
    # what list_files returns names objects: handing it back never expands it as a pattern
    listed = list_files(base, client.config)
    assert listed == sorted(objs) and all(type(u) is not S3URL for u in listed)
    again = S3IterableDataset(listed, client=client)
    assert list(again) == expected
    assert [str(u) for u in expand_urls(listed)] == sorted(objs)
