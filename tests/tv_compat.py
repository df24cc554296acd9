"""Test-only helper: import ``torchvision`` on this CPU torch build, or report that it can't.

torchvision 0.28's compiled ops (``torchvision/_C.so``) do not load against the CPU torch wheel
installed here, and ``import torchvision`` then fails at module level because
``torchvision/_meta_registrations.py`` registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, which only exist when ``_C.so`` loaded. Defining those two op schemas with
``torch.library`` first lets the pure-Python parts (``torchvision.transforms``) import and work;
the detection ops themselves stay unavailable (calling them raises). Library code never needs
torchvision; only tests use this.

    from tests.tv_compat import import_torchvision
    tv = import_torchvision()        # the module, or None when it is not installed / not importable
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBS: list[Any] = []  # keep the Library objects alive: dropping them unregisters the ops


def _define_missing_ops() -> None:
    import torch

    missing = [name for name in _SCHEMAS if not _has_op(torch, name)]
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
    _LIBS.append(lib)


def _has_op(torch: Any, name: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{name}", "Meta") or bool(
            torch._C._jit_get_schemas_for_operator(f"torchvision::{name}"))
    except RuntimeError:
        return False


def import_torchvision() -> ModuleType | None:
    """``torchvision`` if it imports (after defining the missing op schemas), else None."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        _define_missing_ops()
        import torchvision
        import torchvision.transforms  # noqa: F401
    except Exception:  # any failure means "not usable here": tests fall back to plain callables
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return None
    return torchvision
