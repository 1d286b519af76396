"""Model registry: every model is selectable by name and is Opacus-compatible."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from common.models.ststnet import STSTNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "ststnet": STSTNet,
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int = 3, **kwargs: object) -> nn.Module:
    """Instantiate a registered model by name."""
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(available_models())}"
        ) from None
    return factory(num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
