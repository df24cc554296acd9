"""S3Config environment handling and validation, s3:// URL parsing, the error tree."""

from __future__ import annotations

import pickle

import pytest

from awsio import errors
from awsio.config import S3Config, credentials_provider
from awsio.errors import ConfigError, InvalidURLError, s3_error
from awsio.s3.url import S3URL, braceexpand, expand_urls, parse_url


def test_defaults_without_environment(clean_aws_env: pytest.MonkeyPatch) -> None:
    c = S3Config()
    assert c.endpoint_url is None and c.region == "us-east-1" and c.backend == "auto"
    assert c.path_style is False and c.verify is True
    assert c.endpoint == "https://s3.us-east-1.amazonaws.com"


@pytest.mark.parametrize("var", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"])
def test_endpoint_from_env_implies_path_style(clean_aws_env: pytest.MonkeyPatch, var: str) -> None:
    clean_aws_env.setenv(var, "http://127.0.0.1:9000/")
    c = S3Config()
    assert c.endpoint_url == "http://127.0.0.1:9000" and c.path_style is True
    assert S3Config(path_style=False).path_style is False


def test_endpoint_precedence(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWS_ENDPOINT_URL", "http://general:1")
    clean_aws_env.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:2")
    assert S3Config().endpoint_url == "http://s3only:2"


def test_original_plugin_variables(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("S3_ENDPOINT_URL", "minio.local:9000")
    clean_aws_env.setenv("S3_USE_HTTPS", "0")
    clean_aws_env.setenv("S3_VERIFY_SSL", "false")
    c = S3Config()
    assert c.endpoint_url == "http://minio.local:9000" and c.verify is False
    clean_aws_env.setenv("S3_USE_HTTPS", "1")
    assert S3Config().endpoint_url == "https://minio.local:9000"


def test_region_and_backend_from_env(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert S3Config().region == "eu-west-1"
    clean_aws_env.setenv("AWS_REGION", "ap-south-1")
    assert S3Config().region == "ap-south-1"
    clean_aws_env.setenv("AWSIO_BACKEND", "PYTHON")
    assert S3Config().backend == "python"


def test_memory_and_part_settings(clean_aws_env: pytest.MonkeyPatch) -> None:
    aws = S3Config()
    assert aws.max_inflight_bytes == 128 << 20 and aws.buffer_pool_bytes == 256 << 20
    assert aws.part_size == 8 << 20  # S3 caps each connection: large objects come in parts
    assert S3Config(endpoint_url="http://127.0.0.1:9000").part_size == 0  # one stream per object
    assert S3Config(max_inflight_bytes=1 << 20).buffer_pool_bytes == 2 << 20
    clean_aws_env.setenv("AWSIO_MAX_INFLIGHT_BYTES", str(64 << 20))
    clean_aws_env.setenv("AWSIO_PART_SIZE", str(16 << 20))
    clean_aws_env.setenv("AWSIO_BUFFER_POOL_BYTES", "0")
    c = S3Config(endpoint_url="http://127.0.0.1:9000")
    assert (c.max_inflight_bytes, c.part_size, c.buffer_pool_bytes) == (64 << 20, 16 << 20, 0)
    clean_aws_env.setenv("AWSIO_PART_SIZE", "big")
    with pytest.raises(ConfigError, match="part_size"):
        S3Config()


def test_region_from_profile(clean_aws_env: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / "config").write_text("[profile p1]\nregion = eu-north-1\n")
    assert S3Config(profile="p1").region == "eu-north-1"


@pytest.mark.parametrize("kwargs", [
    {"backend": "curl"}, {"max_connections": 0}, {"max_connections": 5000}, {"max_attempts": -1},
    {"connect_timeout": 0}, {"read_timeout": "slow"}, {"endpoint_url": "ftp://x"},
    {"endpoint_url": "http://"}, {"region": ""}, {"ca_bundle": "/no/such/file.pem"},
    {"unsigned": "yes"}, {"max_inflight_bytes": 0}, {"buffer_pool_bytes": -1}, {"part_size": 1.5},
])
def test_invalid_values_raise_config_error(clean_aws_env: pytest.MonkeyPatch, kwargs: dict) -> None:
    with pytest.raises(ConfigError) as info:
        S3Config(**kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.field == next(iter(kwargs)) or next(iter(kwargs)) in str(info.value)


def test_invalid_env_backend(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWSIO_BACKEND", "fast")
    with pytest.raises(ConfigError, match="backend"):
        S3Config()


def test_config_is_frozen_hashable_and_picklable(clean_aws_env: pytest.MonkeyPatch) -> None:
    c = S3Config(endpoint_url="http://h:1", static_credentials=("ak", "sk", None))
    with pytest.raises(Exception):
        c.region = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(c)) == c and hash(c) == hash(c.replace())
    assert "sk" not in repr(c) and "static_credentials" not in c.as_dict()
    assert c.replace(max_attempts=2).max_attempts == 2


def test_credentials_never_in_repr(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "topsecretvalue")
    clean_aws_env.setenv("AWS_SESSION_TOKEN", "tokenvalue")
    creds = credentials_provider(S3Config())()
    assert creds is not None and creds.secret_key == "topsecretvalue" and creds.token == "tokenvalue"
    assert "topsecretvalue" not in repr(creds) and "tokenvalue" not in repr(creds)
    assert credentials_provider(S3Config(unsigned=True))() is None


def test_missing_credentials_is_permission_error(clean_aws_env: pytest.MonkeyPatch) -> None:
    clean_aws_env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(PermissionError, match="no AWS credentials"):
        credentials_provider(S3Config())


def test_parse_url() -> None:
    u = parse_url("s3://bucket/dir/a b+c=d&e~f%g é.tar")
    assert u == S3URL("bucket", "dir/a b+c=d&e~f%g é.tar") and u.name == "a b+c=d&e~f%g é.tar"
    assert str(u) == "s3://bucket/dir/a b+c=d&e~f%g é.tar"
    assert parse_url("s3://bucket").is_prefix and parse_url("s3://bucket/dir/").is_prefix
    assert not parse_url("s3://bucket/dir").is_prefix


@pytest.mark.parametrize("bad", ["http://bucket/key", "s3://", "s3:///key", "bucket/key", "s3://bad bucket/k"])
def test_parse_url_rejects(bad: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        parse_url(bad)
    assert isinstance(info.value, ValueError) and info.value.url == bad


def test_braceexpand() -> None:
    assert braceexpand("s3://b/train-{000000..000002}.tar") == [
        "s3://b/train-000000.tar", "s3://b/train-000001.tar", "s3://b/train-000002.tar"]
    assert braceexpand("s3://b/{a,b}/{1..2}") == ["s3://b/a/1", "s3://b/a/2", "s3://b/b/1", "s3://b/b/2"]
    assert braceexpand("x{3..1}") == ["x3", "x2", "x1"]
    with pytest.raises(InvalidURLError):
        braceexpand("s3://b/x{1..2")
    assert [str(u) for u in expand_urls(["s3://b/k", "s3://b/{0..1}"])] == ["s3://b/k", "s3://b/0", "s3://b/1"]
    with pytest.raises(InvalidURLError):
        expand_urls([])


@pytest.mark.parametrize("status,code,cls,builtin", [
    (404, "NoSuchKey", errors.NoSuchKeyError, FileNotFoundError),
    (404, None, errors.NoSuchKeyError, FileNotFoundError),
    (404, "NoSuchBucket", errors.NoSuchBucketError, FileNotFoundError),
    (403, "AccessDenied", errors.AccessDeniedError, PermissionError),
    (403, "SignatureDoesNotMatch", errors.AccessDeniedError, PermissionError),
    (400, "ExpiredToken", errors.AccessDeniedError, PermissionError),
    (301, "PermanentRedirect", errors.RedirectError, ValueError),
    (503, "SlowDown", errors.ThrottledError, ConnectionError),
    (429, None, errors.ThrottledError, ConnectionError),
    (500, "InternalError", errors.ServerError, ConnectionError),
    (502, None, errors.ServerError, ConnectionError),
])
def test_s3_error_mapping(status: int, code: str | None, cls: type, builtin: type) -> None:
    err = s3_error("s3://b/k", status, code, "msg", "RID1", region="eu-west-2")
    assert type(err) is cls and isinstance(err, builtin) and isinstance(err, errors.AwsioError)
    assert err.url == "s3://b/k" and err.status == status and err.request_id == "RID1"
    assert "s3://b/k" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and str(again) == str(err) and again.code == code
    if cls is errors.RedirectError:
        assert err.region == "eu-west-2" and "eu-west-2" in str(err)


def test_every_error_pickles_with_fields() -> None:
    samples = [
        errors.ArchiveError("truncated", url="s3://b/s.tar", member="a.jpg", offset=512),
        errors.DecodeError("bad jpeg", url="s3://b/s.tar", key="k1", field="jpg"),
        errors.EndpointConnectionError("down", url="s3://b/k", status=None, code=None, request_id=None,
                                       endpoint="http://127.0.0.1:1", reason="refused"),
        errors.ConfigError("bad", field="x", value=3),
        errors.SkippedSamples("skipped", count=3, where="decode"),
    ]
    for err in samples:
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and str(again) == str(err)
        for name in err._fields:
            assert getattr(again, name) == getattr(err, name)
    with pytest.raises(TypeError):
        errors.ArchiveError("x", nonsense=1)


@pytest.mark.parametrize("region", ["us east 1", "us-east-1/", "", "eu\twest"])
def test_a_malformed_region_is_a_config_error(region, clean_aws_env):
    """A region that cannot go into a SigV4 credential scope (spaces, slashes) is refused up front,
    on both backends alike (botocore raised its own error, the native engine signed with it)."""
    from awsio.config import S3Config
    from awsio.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        S3Config(region=region)
    assert err.value.field == "region"
