"""Model registry: every model is selectable by name and is Opacus-compatible.

Every model class carries ``input_shape`` (one sample, without the batch
dimension): STSTNet and OFF-ApexNet take the cached 3x28x28 apex features,
C3D-light and MSR-3D take fixed-length flow sequences (3 x T x H x W).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from common.models.c3d_light import C3DLight
from common.models.msr3d import MSR3D
from common.models.off_apexnet import OffApexNet
from common.models.ststnet import STSTNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "ststnet": STSTNet,
    "off_apexnet": OffApexNet,
    "c3d_light": C3DLight,
    "msr3d": MSR3D,
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int = 3, **kwargs: object) -> nn.Module:
    """Instantiate a registered model by name."""
    return _factory(name)(num_classes=num_classes, **kwargs)


def input_shape_of(name: str) -> tuple[int, ...]:
    """Shape of one input sample of a registered model (no batch dimension)."""
    return tuple(_factory(name).input_shape)  # type: ignore[attr-defined]


def _factory(name: str) -> Callable[..., nn.Module]:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(available_models())}"
        ) from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
