"""awsio: fast, dependable PyTorch datasets over Amazon S3 and S3-compatible stores.

Public names are imported lazily so that ``import awsio`` stays cheap and never imports torch;
torch is imported when a dataset class is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "AwsioError": "awsio.errors",
    "DecodeError": "awsio.errors",
    "Decoder": "awsio.decode",
    "IntegrityError": "awsio.errors",
    "MemorySource": "awsio.source",
    "Pipeline": "awsio.pipeline",
    "S3Client": "awsio.s3.client",
    "S3Config": "awsio.config",
    "S3Dataset": "awsio.dataset",
    "S3IterableDataset": "awsio.dataset",
    "ShuffleDataset": "awsio.dataset",
    "SkipStats": "awsio.handlers",
    "StateError": "awsio.errors",
    "errors": "awsio.errors",
    "file_exists": "awsio.s3.client",
    "get_file_size": "awsio.s3.client",
    "list_files": "awsio.s3.client",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'awsio' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "errors" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
