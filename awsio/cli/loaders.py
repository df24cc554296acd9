"""The loaders the benchmark compares. Each returns a torch IterableDataset of (image, label)
samples from the same tar shards; ``decode=True`` turns the image into a normalised tensor with
the same :class:`~awsio.cli.common.ImageToTensor` everywhere, ``decode=False`` leaves JPEG bytes.

* ``awsio_native`` / ``awsio_python``: awsio's S3IterableDataset + pipeline on one backend;
* ``s3torchconnector``: Amazon's connector (CRT client) + webdataset's tar expansion;
* ``boto3``: a boto3 ``get_object`` stream read by ``tarfile`` (the baseline);
* ``webdataset``: webdataset over ``pipe:python -m awsio.tools.cat s3://...``.

:func:`make_loader` raises :class:`LoaderUnavailable` with the reason when a loader cannot run
here (a peer not installed, the native extension not built).
"""

from __future__ import annotations

import shlex
import sys
import tarfile
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch.utils.data

from awsio.cli.common import ImageToTensor, ToLabel, as_pipeline, build_image_dataset
from awsio.config import S3Config

__all__ = ["LOADERS", "LoaderUnavailable", "make_loader"]

IMAGE_KEY, LABEL_KEY = "jpg;jpeg;png", "cls"


class LoaderUnavailable(RuntimeError):
    """The loader cannot run in this environment; the message says why."""


class _Finish:
    """Image bytes -> tensor (decode) or kept as bytes; label -> int. Picklable."""

    def __init__(self, decode: bool, size: int) -> None:
        self.image: Callable[[Any], Any] = ImageToTensor(size) if decode else bytes
        self.label = ToLabel()

    def __call__(self, sample: Sequence[Any]) -> tuple[Any, int]:
        return self.image(sample[0]), self.label(sample[1])


def pick(sample: dict[str, Any], spec: str) -> Any:
    """The first of ``spec``'s ``;``-separated fields present in ``sample``; KeyError if none."""
    for ext in spec.split(";"):
        if ext in sample:
            return sample[ext]
    raise KeyError(f"sample {sample.get('__key__')!r} has none of {spec!r}")


def group_members(members: Iterable[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    """Consecutive ``(member name, bytes)`` with the same key -> one sample dict (``__key__`` + fields)."""
    from awsio.grouping import sample_key

    current: dict[str, Any] = {}
    for name, data in members:
        key, field = sample_key(name)
        if current and current["__key__"] != key:
            yield current
            current = {}
        current.setdefault("__key__", key)
        current[field] = data
    if current:
        yield current


def _worker_slice(items: Sequence[str]) -> Sequence[str]:
    info = torch.utils.data.get_worker_info()
    return items if info is None else items[info.id::info.num_workers]


class _Boto3Tar(torch.utils.data.IterableDataset):
    def __init__(self, urls: Sequence[str], config: S3Config, finish: _Finish) -> None:
        super().__init__()
        self.urls, self.config, self.finish = list(urls), config, finish

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        import boto3
        import botocore.config

        from awsio.config import credentials_provider
        from awsio.s3.url import parse_url

        creds = credentials_provider(self.config)()
        s3 = boto3.client("s3", endpoint_url=self.config.endpoint_url, region_name=self.config.region,
                          aws_access_key_id=creds.access_key if creds else None,
                          aws_secret_access_key=creds.secret_key if creds else None,
                          aws_session_token=creds.token if creds else None,
                          config=botocore.config.Config(s3={"addressing_style": "path" if self.config.path_style else "auto"}))
        for url in _worker_slice(self.urls):
            u = parse_url(url)
            body = s3.get_object(Bucket=u.bucket, Key=u.key)["Body"]
            with tarfile.open(fileobj=body, mode="r|") as tar:
                members = ((m.name, tar.extractfile(m).read()) for m in tar if m.isfile())  # type: ignore[union-attr]
                for s in group_members(members):
                    yield self.finish((pick(s, IMAGE_KEY), pick(s, LABEL_KEY)))


class _ConnectorTar(torch.utils.data.IterableDataset):
    def __init__(self, urls: Sequence[str], config: S3Config, finish: _Finish) -> None:
        super().__init__()
        self.urls, self.config, self.finish = list(urls), config, finish

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        from s3torchconnector import S3ClientConfig, S3IterableDataset
        from webdataset.tariterators import tar_file_expander

        ds = S3IterableDataset.from_objects(
            list(_worker_slice(self.urls)), region=str(self.config.region), endpoint=self.config.endpoint_url,
            s3client_config=S3ClientConfig(force_path_style=bool(self.config.path_style)))
        streams = ({"url": r.key, "stream": r} for r in ds)
        for s in group_members((m["fname"], m["data"]) for m in tar_file_expander(streams, eof_value=None)):
            yield self.finish((pick(s, IMAGE_KEY), pick(s, LABEL_KEY)))


def _awsio(urls: Sequence[str], config: S3Config, decode: bool, size: int, backend: str) -> Any:
    if backend == "native":
        try:
            import awsio._native  # noqa: F401
        except ImportError as e:
            raise LoaderUnavailable(f"awsio native extension not built ({e})") from None
    cfg = config.replace(backend=backend)
    try:
        from awsio.dataset import S3IterableDataset
    except ImportError as e:
        raise LoaderUnavailable(f"awsio.dataset not available ({e})") from None
    if decode:
        return build_image_dataset(urls, config=cfg, image_size=size, shuffle_urls=False,
                                   equal_work=None)
    ds = S3IterableDataset(list(urls), config=cfg)
    return as_pipeline(ds).to_tuple(IMAGE_KEY, LABEL_KEY).map(_Finish(False, size))


def _webdataset(urls: Sequence[str], config: S3Config, decode: bool, size: int) -> Any:
    try:
        import webdataset as wds
    except ImportError as e:
        raise LoaderUnavailable(f"webdataset not installed ({e})") from None
    endpoint = f"--endpoint-url {shlex.quote(config.endpoint_url)} " if config.endpoint_url else ""
    pipes = [f"pipe:{shlex.quote(sys.executable)} -m awsio.tools.cat {endpoint}{shlex.quote(u)}" for u in urls]
    return (wds.WebDataset(pipes, shardshuffle=False, empty_check=False)
            .to_tuple(IMAGE_KEY, LABEL_KEY).map(_Finish(decode, size)))


def _peer_check(module: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        raise LoaderUnavailable(f"{module} not installed ({e})") from None


def make_loader(name: str, urls: Sequence[str], config: S3Config, *, decode: bool, size: int) -> Any:
    """The IterableDataset for loader ``name`` (one of :data:`LOADERS`)."""
    if name == "awsio_native":
        return _awsio(urls, config, decode, size, "native")
    if name == "awsio_python":
        return _awsio(urls, config, decode, size, "python")
    if name == "boto3":
        _peer_check("boto3")
        return _Boto3Tar(urls, config, _Finish(decode, size))
    if name == "s3torchconnector":
        _peer_check("s3torchconnector")
        _peer_check("webdataset")
        return _ConnectorTar(urls, config, _Finish(decode, size))
    if name == "webdataset":
        return _webdataset(urls, config, decode, size)
    raise ValueError(f"unknown loader {name!r}; known: {', '.join(LOADERS)}")


LOADERS = ("awsio_native", "awsio_python", "s3torchconnector", "boto3", "webdataset")
