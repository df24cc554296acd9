"""Models for the training job. ``SmallCNN`` is the CPU-friendly default; torchvision models are
options (``_target_: awsio.models.torchvision_model``) where torchvision imports."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["SmallCNN", "torchvision_model"]


class SmallCNN(nn.Module):
    """Three conv blocks (conv-BN-ReLU-pool) and a linear head. Any input size >= 8 pixels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError("num_classes and width must be >= 1")
        layers: list[nn.Module] = []
        chans = [in_channels, width, width * 2, width * 4]
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(chans[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def torchvision_model(name: str = "resnet18", num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """A torchvision classification model by name, untrained, with ``num_classes`` outputs.

    Raises ImportError with a clear message where torchvision does not import (e.g. a CPU torch
    with a mismatched torchvision), and ValueError for an unknown model name.
    """
    try:
        import torchvision.models as tvm
    except Exception as e:  # torchvision fails with RuntimeError on op mismatches, not only ImportError
        raise ImportError(f"model {name!r} needs torchvision, which does not import here ({e}); "
                          "use model=smallcnn") from e
    if not hasattr(tvm, name):
        raise ValueError(f"torchvision has no model {name!r}")
    return getattr(tvm, name)(weights=None, num_classes=num_classes, **kwargs)  # type: ignore[no-any-return]
