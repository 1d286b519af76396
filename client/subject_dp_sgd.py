"""User-level DP-SGD: each step protects a whole subject, not one clip.

A face belongs to a person, and a person contributes many clips, so the unit
a step must protect is the subject. Each step

1. Poisson-samples every subject independently with probability q, from a
   secret random source (a coordinator that knew the draw could undo the
   amplification);
2. computes each sampled subject's gradient, the sum of its clips' gradients
   (:mod:`client.per_sample_grads`), and clips it to L2 norm C, whatever the
   number of clips;
3. sums the clipped subject gradients;
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
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from client.dp_training import DPSettings, LocalTrainingResult
from client.per_sample_grads import DEFAULT_MODE, Mode, UnitGradients, unit_sums
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
    return clipped_sum(unit_sums(per_clip, subject_index), max_norm)


def clipped_sum(per_unit: Sequence[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Σ over units of clip_C(unit's gradient); ``per_unit`` is (units, *parameter) per parameter.

    The norm is over all parameters of a unit together, so no unit moves the
    sum by more than ``max_norm``.
    """
    if not per_unit:
        return []
    flat = [g.reshape(g.shape[0], -1) for g in per_unit]
    norms = torch.sqrt(sum((f * f).sum(dim=1) for f in flat))  # one norm per unit
    factor = torch.clamp(max_norm / (norms + 1e-12), max=1.0)
    return [
        (f * factor[:, None]).sum(dim=0).reshape(g.shape[1:])
        for f, g in zip(flat, per_unit, strict=True)
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
    grad_mode: Mode = DEFAULT_MODE,
) -> LocalTrainingResult:
    """Train ``model`` in place for one round of user-level DP-SGD.

    ``subjects`` names each clip's subject; ``plan`` is :func:`subject_plan`
    for this device. ``seed`` None (the only private choice) draws the subject
    sampling from the OS's secure source; an integer makes it reproducible,
    for tests only. The noise is always secret. ``grad_mode`` picks how the
    per-subject gradients are computed; every mode gives the same gradients.
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

    model.train()
    per_subject = UnitGradients(model, grad_mode)
    params = per_subject.params
    optimizer = torch.optim.SGD(params, lr=learning_rate)
    loss_sum, correct, seen = 0.0, 0, 0
    for _ in range(plan.steps_per_round):
        chosen = np.flatnonzero(sampler.random(len(names)) < q)
        clips = torch.as_tensor(np.flatnonzero(np.isin(inverse, chosen)), dtype=torch.long)
        summed = [torch.zeros_like(p) for p in params]
        if len(clips):
            x, y = x_all[clips], y_all[clips]
            # Subjects renumbered 0..s-1 within the step, for the grouped sum.
            _, local = torch.unique(per_subject_clip[clips], return_inverse=True)
            loss, logits, grads = per_subject(x, y, local)
            summed = clipped_sum(grads, clip_norm)
            loss_sum += float(loss) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        # An empty draw still takes its noisy step: it counts towards the budget.
        for p, s in zip(params, summed, strict=True):
            noise = torch.normal(0.0, sigma * clip_norm, p.shape, generator=noise_source)
            p.grad = (s + noise) / expected_subjects
        optimizer.step()
    per_subject.close()  # the caller's model is a plain module again
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
