"""The issue's snippet, as written, against a real S3 server (SeaweedFS), and equivalence with
webdataset reading the same shards."""

from __future__ import annotations

import io
import logging
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from awsio.dataset import S3IterableDataset
from awsio.s3.client import S3Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tv_compat import import_torchvision  # noqa: E402

pytestmark = pytest.mark.integration

SHARDS, PER_SHARD = 8, 12
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 210)]


def jpeg(label: int, n: int) -> bytes:
    rng = np.random.default_rng(n)
    arr = np.clip(np.array(COLOURS[label])[None, None] + rng.normal(0, 25, (28, 28, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def imagenet(s3_bucket: str, s3_config: Any, tmp_path: Path) -> dict[str, Any]:
    """8 tar shards of (n.cls, n.jpg) samples on S3, with local copies for webdataset."""
    client = S3Client(s3_config)
    local = []
    for s in range(SHARDS):
        members = []
        for i in range(PER_SHARD):
            n = s * PER_SHARD + i
            members += [(f"n{n % 3:08d}_{n:05d}.cls", str(n % 3).encode()),
                        (f"n{n % 3:08d}_{n:05d}.jpg", jpeg(n % 3, n))]
        data = tar_bytes(members)
        client.put(f"s3://{s3_bucket}/imagenet/train-{s:06d}.tar", data)
        path = tmp_path / f"train-{s:06d}.tar"
        path.write_bytes(data)
        local.append(str(path))
    client.close()
    return {"pattern": f"s3://{s3_bucket}/imagenet/train-{{000000..{SHARDS - 1:06d}}}.tar",
            "local": local, "bucket": s3_bucket}


def to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.resize((16, 16)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def make_preproc() -> Any:
    if import_torchvision() is None:
        return to_tensor
    from torchvision import transforms as T

    return T.Compose([T.Resize(20), T.CenterCrop(16), T.ToTensor(),
                      T.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])])


@pytest.mark.filterwarnings("ignore:This DataLoader will create 8 worker processes")
def test_issue_snippet_trains_as_written(imagenet: dict[str, Any], s3_server: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_server.env().items():  # credentials and endpoint from the environment
        monkeypatch.setenv(k, v)
    preproc = make_preproc()
    dataset = (
        S3IterableDataset(imagenet["pattern"])
        .dataproc(batch_size=200)
        .decode("pil")
        .transform_fn(image=preproc)
    )
    loader = torch.utils.data.DataLoader(dataset, num_workers=8)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        targets_seen: list[int] = []
        for inputs, targets in loader:
            assert inputs.shape[1:] == (3, 16, 16) and inputs.dtype == torch.float32
            assert targets.dtype == torch.int64 and targets.shape == (inputs.shape[0],)
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            targets_seen += targets.tolist()
        # every sample exactly once per epoch across the 8 workers
        assert sorted(targets_seen) == sorted(n % 3 for n in range(SHARDS * PER_SHARD))
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    assert correct / (SHARDS * PER_SHARD) > 0.9


@pytest.mark.parametrize("spec", ["pil", "torchrgb8"])
def test_same_samples_as_webdataset(imagenet: dict[str, Any], s3_config: Any, spec: str) -> None:
    import webdataset as wds

    ours = list(S3IterableDataset(imagenet["pattern"], config=s3_config).decode(spec))
    theirs = list(wds.WebDataset(imagenet["local"], shardshuffle=False, empty_check=False).decode(spec))
    assert len(ours) == len(theirs) == SHARDS * PER_SHARD
    for a, b in zip(ours, theirs):
        assert a["__key__"] == b["__key__"] and a["cls"] == b["cls"]
        assert a["__url__"].endswith(Path(b["__url__"]).name)
        if spec == "pil":
            assert a["jpg"].tobytes() == b["jpg"].tobytes()
        else:
            assert torch.equal(a["jpg"], b["jpg"])


def test_bad_samples_and_shards_are_skipped_and_counted(imagenet: dict[str, Any], s3_config: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    client = S3Client(s3_config)
    bucket = imagenet["bucket"]
    client.put(f"s3://{bucket}/imagenet/train-000001.tar",
               tar_bytes([("n00000000_99999.cls", b"0"), ("n00000000_99999.jpg", b"not a jpeg"),
                          ("n00000001_99998.cls", b"1"), ("n00000001_99998.jpg", jpeg(1, 1))]))
    urls = [f"s3://{bucket}/imagenet/train-{s:06d}.tar" for s in (0, 1, 2)]
    urls.append(f"s3://{bucket}/imagenet/missing.tar")
    dataset = S3IterableDataset(urls, config=s3_config, handler="warn")
    pipe = dataset.decode("pil").to_tuple("jpg", "cls")
    with caplog.at_level(logging.WARNING):
        items = list(pipe)
    assert len(items) == 2 * PER_SHARD + 1
    # the missing shard cannot be indexed when the dataset is made: counted under "index"
    assert pipe.stats.by_stage() == {"decode": 1, "index": 1}
    assert pipe.stats.counts[("decode", "DecodeError")] == 1
    assert "skipped 2" in caplog.text
