"""The training loss of any registered model.

Most models return one set of logits and train with cross-entropy. A model
with several output heads (``forward_heads``, e.g. MSR-3D) trains every head
with its own cross-entropy; the losses are summed so that each head gets a
full-strength gradient.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F


def training_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits used for accuracy) for a batch.

    ``model`` may be wrapped by Opacus (GradSampleModule keeps the original in
    ``_module``); calling the inner module's ``forward_heads`` still runs the
    per-sample-gradient hooks, which sit on the submodules.
    """
    inner = getattr(model, "_module", model)
    forward_heads = getattr(inner, "forward_heads", None)
    if forward_heads is not None:
        heads = forward_heads(x)
        # A sum of tensors is a tensor (``sum`` starts from 0, which adds to it).
        loss = cast(torch.Tensor, sum(F.cross_entropy(logits, y) for logits in heads))
        return loss, torch.stack(heads, dim=0).mean(dim=0)
    logits = model(x)
    return F.cross_entropy(logits, y), logits
