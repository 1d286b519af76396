"""User-level DP-SGD: each step protects a whole subject, not one clip.

A face belongs to a person, and a person contributes many clips, so the unit
a step must protect is the subject. Each step

1. Poisson-samples every subject independently with probability q, from a
   secret random source (a coordinator that knew the draw could undo the
   amplification);
2. computes the gradient of each sampled clip (Opacus' per-sample gradients);
3. sums the gradients of each subject's clips, and clips that per-subject sum
   to L2 norm C, whatever the number of clips;
4. adds N(0, σ²C²) to the sum of the clipped subject sums and divides by the
   expected number of subjects per step, q·n.

Adding or removing one subject, with all of their clips, changes the sum in
step 4 by at most C before noise (:func:`clipped_subject_sum`), so every step
is the sampled Gaussian mechanism over subjects and the (σ, q, steps) history
is accounted exactly as DP-SGD is over records, with subjects as the records.
The history therefore gives a subject-level ε directly, with no group-privacy
conversion.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from opacus import GradSampleModule
from torch import nn

from client.dp_training import DPSettings, LocalTrainingResult
from common.models.losses import training_loss
from common.privacy.accounting import Segment, epsilon_rdp, merge_segment
from common.privacy.dp_plan import DPPlan


def subject_plan(num_subjects: int, batch_subjects: int, local_epochs: int, rounds: int) -> DPPlan:
    """q and steps over subjects, as Opacus plans them over records."""
    return DPPlan.for_device(num_subjects, batch_subjects, local_epochs, rounds)


def clipped_subject_sum(
    per_clip: Sequence[torch.Tensor], subject_index: torch.Tensor, max_norm: float
) -> list[torch.Tensor]:
    """Σ over subjects of clip_C(Σ over the subject's clips of their gradients).

    ``per_clip`` holds one tensor per parameter, shaped (clips, *parameter);
    ``subject_index`` gives each clip's subject as 0..s-1. Returns one tensor
    per parameter, shaped like the parameter. No subject moves it by more
    than ``max_norm``.
    """
    if not per_clip:
        return []
    num = int(subject_index.max()) + 1 if len(subject_index) else 0
    sums = []
    for grads in per_clip:
        flat = grads.reshape(grads.shape[0], -1)
        total = torch.zeros(num, flat.shape[1], dtype=flat.dtype)
        total.index_add_(0, subject_index, flat)
        sums.append(total)
    norms = torch.sqrt(sum((s * s).sum(dim=1) for s in sums))  # one norm per subject
    factor = torch.clamp(max_norm / (norms + 1e-12), max=1.0)
    return [
        (s * factor[:, None]).sum(dim=0).reshape(g.shape[1:])
        for s, g in zip(sums, per_clip, strict=True)
    ]


def train_subject_level(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[str],
    *,
    plan: DPPlan,
    learning_rate: float,
    dp: DPSettings,
    history: Sequence[Segment],
    seed: int | None = None,
) -> LocalTrainingResult:
    """Train ``model`` in place for one round of user-level DP-SGD.

    ``subjects`` names each clip's subject; ``plan`` is :func:`subject_plan`
    for this device. ``seed`` None (the only private choice) draws the subject
    sampling from the OS's secure source; an integer makes it reproducible,
    for tests only. The noise is always secret.
    """
    if len(features) == 0:
        raise ValueError("no training examples on this device")
    names, inverse = np.unique(np.asarray(subjects), return_inverse=True)
    sampler = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
    noise_source = torch.Generator().manual_seed(secrets.randbits(63))
    x_all = torch.as_tensor(features, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    per_subject_clip = torch.as_tensor(inverse, dtype=torch.long)
    q, sigma, clip_norm = plan.sample_rate, dp.noise_multiplier, dp.max_grad_norm
    expected_subjects = q * len(names)

    wrapped = GradSampleModule(model, loss_reduction="mean")
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=learning_rate)
    wrapped.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for _ in range(plan.steps_per_round):
        chosen = np.flatnonzero(sampler.random(len(names)) < q)
        clips = torch.as_tensor(np.flatnonzero(np.isin(inverse, chosen)), dtype=torch.long)
        summed = [torch.zeros_like(p) for p in params]
        if len(clips):
            x, y = x_all[clips], y_all[clips]
            wrapped.zero_grad(set_to_none=True)
            loss, logits = training_loss(wrapped, x, y)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            # Subjects renumbered 0..s-1 within the step, for the grouped sum.
            _, local = torch.unique(per_subject_clip[clips], return_inverse=True)
            grads = [p.grad_sample for p in params]  # type: ignore[attr-defined]
            summed = clipped_subject_sum(grads, local, clip_norm)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        # An empty draw still takes its noisy step: it counts towards the budget.
        for p, s in zip(params, summed, strict=True):
            noise = torch.normal(0.0, sigma * clip_norm, p.shape, generator=noise_source)
            p.grad = (s + noise) / expected_subjects
            p.grad_sample = None  # type: ignore[attr-defined]
        optimizer.step()
    wrapped._close()  # the caller's model is a plain module again
    new_history = merge_segment(history, (sigma, q, plan.steps_per_round))
    return LocalTrainingResult(
        num_examples=len(features),
        loss=loss_sum / max(seen, 1),
        accuracy=correct / max(seen, 1),
        steps=plan.steps_per_round,
        sample_rate=q,
        noise_multiplier=sigma,
        history=new_history,
        epsilon=epsilon_rdp(new_history, dp.delta),
    )
