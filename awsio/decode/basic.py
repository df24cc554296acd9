"""Decoders of non-image fields, keyed by extension: text, class numbers, json, npy/npz, pth, pickle.

Every decoder takes the field's bytes and returns a value. numpy and torch are imported only
inside the decoders that need them. Nothing here unpickles by default: ``npy``/``npz`` are read
with ``allow_pickle=False``, ``pth`` with ``torch.load(weights_only=True)``, and the pickle
decoders live in a separate table that a :class:`~awsio.decode.Decoder` uses only when the user
opts in (``allow_pickle=True``), because shards may come from anyone.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any, Callable, Mapping

__all__ = [
    "BASIC_DECODERS",
    "CLASS_EXTENSIONS",
    "PICKLE_DECODERS",
    "TEXT_EXTENSIONS",
    "decode_class",
    "decode_json",
    "decode_npy",
    "decode_npz",
    "decode_pickle",
    "decode_pth",
    "decode_text",
]

TEXT_EXTENSIONS = ("txt", "text", "transcript")
CLASS_EXTENSIONS = ("cls", "cls2", "class", "index", "inx", "label", "id", "target")


def decode_text(data: bytes) -> str:
    """UTF-8 text."""
    return data.decode("utf-8")


def decode_class(data: bytes) -> int:
    """An integer written as text (``b"7"``, ``b" 7\\n"``)."""
    return int(data.decode("ascii").strip())


def decode_json(data: bytes) -> Any:
    return json.loads(data)


def decode_npy(data: bytes) -> Any:
    """A numpy array from ``.npy`` bytes; object arrays (which need pickle) are refused."""
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_npz(data: bytes) -> dict[str, Any]:
    """A dict of numpy arrays from ``.npz`` bytes, without pickle."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def decode_pth(data: bytes) -> Any:
    """A torch object saved with ``torch.save``, loaded with ``weights_only=True`` onto the CPU."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def decode_pickle(data: bytes) -> Any:
    """Unpickle. Runs arbitrary code from the shard: only used when the user opts in."""
    return pickle.loads(data)


BASIC_DECODERS: Mapping[str, Callable[[bytes], Any]] = {
    **{ext: decode_text for ext in TEXT_EXTENSIONS},
    **{ext: decode_class for ext in CLASS_EXTENSIONS},
    "json": decode_json,
    "jsn": decode_json,
    "npy": decode_npy,
    "npz": decode_npz,
    "pth": decode_pth,
}

PICKLE_DECODERS: Mapping[str, Callable[[bytes], Any]] = {
    "pkl": decode_pickle,
    "pickle": decode_pickle,
    "pyd": decode_pickle,
}
