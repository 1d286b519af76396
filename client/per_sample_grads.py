"""Per-unit gradients for DP-SGD (a unit is a clip or a subject), by five equivalent methods.

DP-SGD clips the gradient of each protected unit before it sums: of each clip
(clip-level) or of each subject's clips together (user-level). Several methods
give the same gradients; which is fastest depends on the model and on how many
clips a unit has, not on correctness:

* ``hooks``: Opacus' GradSampleModule; hooks on each layer compute every
  clip's gradient from the activations and the backpropagated gradients.
* ``functorch``: the same hooks, each layer's per-clip gradient from
  ``torch.func.vmap`` over that layer instead of Opacus' formula.
* ``ew``: PyTorch's ExpandedWeights (``call_for_per_sample_grads``; Opacus'
  ``grad_sample_mode="ew"``). It fails on a batch of zero, which Poisson
  sampling can draw, so an empty batch never reaches it; and it covers a
  fixed list of operations, so it refuses MSR-3D (a softmax over a weight).
* ``vmap``: one ``torch.func.vmap(grad(loss of one clip))`` over the model.
* ``unit-backward``: one ordinary backward pass per unit, of the sum of its
  clips' losses. No per-clip gradient is ever formed: a subject's gradient is
  the gradient of its summed loss. It pays a pass per unit, so it wins when
  units have many clips (subjects) and loses when every unit is one clip.

The first four compute per-clip gradients and sum them by unit. All five
return, per parameter in ``model.parameters()`` order, a tensor shaped
(units, *parameter): unit u's summed gradient of its clips' cross-entropies
(summed over the heads of a multi-head model). ``tests/unit/test_per_sample_grads.py``
checks every mode against ``hooks``; ``bench/bench_dp_overhead.py`` measures
them, and :data:`DEFAULT_MODE` is the fastest at the default shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal, cast

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from common.models.losses import training_loss

Mode = Literal["hooks", "functorch", "ew", "vmap", "unit-backward"]
MODES: tuple[Mode, ...] = ("hooks", "functorch", "ew", "vmap", "unit-backward")
# Fastest for STSTNet at user-level DP-SGD's default step (4 subjects of 12
# clips) in docs/benchmarks.md, "A DP-SGD step against a plain step, by
# per-unit gradient method".
DEFAULT_MODE: Mode = "unit-backward"

Batch = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]


def unit_sums(per_clip: Sequence[torch.Tensor], unit: torch.Tensor) -> list[torch.Tensor]:
    """Per-clip gradients (clips, *p) summed by ``unit`` (0..u-1) into (units, *p)."""
    num = int(unit.max()) + 1 if len(unit) else 0
    sums = []
    for grads in per_clip:
        total = torch.zeros((num, *grads.shape[1:]), dtype=grads.dtype)
        total.index_add_(0, unit, grads)
        sums.append(total)
    return sums


class UnitGradients:
    """Per-unit gradients of ``model`` (whose trainable parameters it reads) by ``mode``.

    Create one per round of local training and :meth:`close` it afterwards:
    the hook modes attach hooks to the model, which :meth:`close` removes.
    """

    def __init__(self, model: nn.Module, mode: Mode = DEFAULT_MODE) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown per-sample gradient mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._wrapped: nn.Module | None = None
        if mode in ("hooks", "functorch"):
            from opacus import GradSampleModule

            self._wrapped = GradSampleModule(
                model, loss_reduction="mean", force_functorch=mode == "functorch"
            )
        self._loss_of = _LossOf(model)
        self._names = [f"model.{n}" for n, p in model.named_parameters() if p.requires_grad]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, unit: torch.Tensor) -> Batch:
        """(mean loss over clips, logits, per-unit gradients) of the batch.

        ``unit`` gives each clip's unit as 0..u-1 (``torch.arange(len(y))``
        for clip-level DP-SGD).
        """
        if len(y) == 0:
            # Poisson sampling can draw nobody: nothing to compute.
            with torch.no_grad():
                logits = self.model(x)
            grads = [torch.zeros((0, *p.shape), dtype=p.dtype) for p in self.params]
            return torch.zeros(()), logits, grads
        if self.mode == "unit-backward":
            return self._unit_backward(x, y, unit)
        compute = {"vmap": self._vmap, "ew": self._expanded_weights}.get(self.mode, self._hooks)
        loss, logits, per_clip = compute(x, y)
        return loss, logits, unit_sums(per_clip, unit)

    def close(self) -> None:
        """Detach any hooks; the model is a plain module again."""
        if self._wrapped is not None:
            self._wrapped._close()  # type: ignore[operator]
            self._wrapped = None

    def _unit_backward(self, x: torch.Tensor, y: torch.Tensor, unit: torch.Tensor) -> Batch:
        num = int(unit.max()) + 1
        grads = [torch.empty((num, *p.shape), dtype=p.dtype) for p in self.params]
        logits_parts, loss_total = [], 0.0
        order = []
        for u in range(num):
            idx = torch.nonzero(unit == u).flatten()
            mean_loss, logits = training_loss(self.model, x[idx], y[idx])
            # The unit's gradient is that of its clips' summed losses.
            for out, g in zip(grads, torch.autograd.grad(mean_loss * len(idx), self.params)):
                out[u] = g
            loss_total += float(mean_loss.detach()) * len(idx)
            logits_parts.append(logits.detach())
            order.append(idx)
        logits = torch.empty((len(y), *logits_parts[0].shape[1:]), dtype=logits_parts[0].dtype)
        logits[torch.cat(order)] = torch.cat(logits_parts)
        return torch.tensor(loss_total / len(y)), logits, grads

    def _hooks(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        assert self._wrapped is not None
        self._wrapped.train(self.model.training)
        self._wrapped.zero_grad(set_to_none=True)
        loss, logits = training_loss(self._wrapped, x, y)
        with warnings.catch_warnings():
            # The input tensor never requires grad; PyTorch says so on every step.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        grads = [cast(torch.Tensor, p.grad_sample) for p in self.params]  # type: ignore[attr-defined]
        for p in self.params:
            p.grad_sample = None  # type: ignore[attr-defined]
            p.grad = None
        return loss.detach(), logits.detach(), grads

    def _expanded_weights(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

        # ExpandedWeights works on a module's forward; the loss module makes
        # the multi-head loss that forward.
        for p in self.params:
            p.grad = None
        call = call_for_per_sample_grads(self._loss_of, batch_size=len(y), loss_reduction="mean")
        try:
            loss, logits = call(x, y)
        except RuntimeError as err:
            if "Expanded Weights" not in str(err):
                raise
            name = type(self.model).__name__
            raise ValueError(f"per-sample gradient mode 'ew' cannot train {name}: {err}") from None
        loss.backward()
        grads = [cast(torch.Tensor, p.grad_sample) for p in self.params]  # type: ignore[attr-defined]
        for p in self.params:
            del p.grad_sample  # type: ignore[attr-defined]
            p.grad = None
        return loss.detach(), logits.detach(), grads

    def _vmap(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        params = {n: p.detach() for n, p in zip(self._names, self.params, strict=True)}
        buffers = {f"model.{n}": b for n, b in self.model.named_buffers()}
        loss_of = self._loss_of

        def one_clip(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor):
            loss, logits = functional_call(loss_of, (p, buffers), (xi[None], yi[None]))
            return loss, (loss.detach(), logits.detach()[0])

        per_clip, (losses, logits) = vmap(
            grad(one_clip, has_aux=True), in_dims=(None, 0, 0), randomness="different"
        )(params, x, y)
        return losses.mean(), logits, [per_clip[n] for n in self._names]


class _LossOf(nn.Module):
    """``training_loss`` of the wrapped model as a module's forward (for vmap and EW)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return training_loss(self.model, x, y)
