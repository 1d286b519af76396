"""The model's predictions on a device's clips (no training code, no Opacus)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices."""
    model.eval()
    out = []
    x_all = torch.as_tensor(features, dtype=torch.float32)
    for start in range(0, len(x_all), batch_size):
        out.append(model(x_all[start : start + batch_size]).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
