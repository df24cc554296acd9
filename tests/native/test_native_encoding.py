"""SigV4 building blocks of the native reader: S3 URI encoding, canonical query, XML errors."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

native = pytest.importorskip("awsio._native", reason="awsio._native is not built")

pytestmark = pytest.mark.native


@given(st.text(max_size=40))
def test_uri_encode_matches_s3_rules(key):
    # S3 / SigV4: encode every byte of the UTF-8 form except A-Za-z0-9-._~ ; keep '/' in paths.
    assert native.uri_encode(key, True) == quote(key.encode("utf-8"), safe="/-_.~")
    assert native.uri_encode(key, False) == quote(key.encode("utf-8"), safe="-_.~")


def test_uri_encode_examples():
    assert native.uri_encode("a b+c=&~%é/x", True) == "a%20b%2Bc%3D%26~%25%C3%A9/x"
    assert native.uri_encode("a/b", False) == "a%2Fb"


def test_canonical_query_sorts_and_encodes():
    params = [("prefix", "a b/"), ("list-type", "2"), ("continuation-token", "x+y="), ("a", "")]
    assert native.canonical_query(params) == (
        "a=&continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2F")


def test_xml_field():
    body = "<Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>R1</RequestId></Error>"
    assert native.xml_field(body, "Code") == "NoSuchKey"
    assert native.xml_field(body, "RequestId") == "R1"
    assert native.xml_field(body, "Region") == ""
