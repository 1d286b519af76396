"""Held-out evaluation as a DP mechanism: Gaussian-noised confusion counts.

A held-out device's confusion counts describe its subjects' clips and labels,
so they leave the device only through the Gaussian mechanism. Adding or
removing one clip changes one cell by 1 (L2 sensitivity 1), so noise of
standard deviation σ on every cell is the Gaussian mechanism with noise
multiplier σ. Its privacy is accounted like a DP-SGD step without subsampling
(q = 1), in the device's own ledger and against its own budget. σ is
calibrated once per run for the run's planned releases (one per round), to
spend ``evaluation-epsilon`` (capped by the device's budget) over them.
The noise comes from the operating system's secure random source.

At ``dp-unit = subject`` the unit is a held-out subject: each subject counts
at most ``eval-clips-per-subject`` = m of their clips (the first m in the
manifest's order, never chosen by label or prediction), so adding or removing
a subject changes the counts by at most m in L2 norm (all m in one cell at
worst). The noise is then σ·m per cell, the mechanism
``gaussian-counts-subject``, accounted with the same (σ, q = 1) history.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from client.privacy_policy import Refusal, budget_refusal, mechanism_terms
from client.round_context import Refused, RoundContext, refuse_and_record, spent_so_far
from common.metrics import confusion_matrix
from common.privacy.dp_plan import DPPlan
from common.privacy.ledger import encode_entry
from common.privacy.units import SUBJECT, evaluation_mechanism
from common.wire import EvaluateReply, counts_digest

_SECURE = secrets.SystemRandom()


def counted_clips(subjects: Sequence[str], cap: int) -> np.ndarray:
    """Indices of the clips counted: each subject's first ``cap`` clips."""
    seen: dict[str, int] = {}
    kept = []
    for i, subject in enumerate(subjects):
        seen[subject] = seen.get(subject, 0) + 1
        if seen[subject] <= cap:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def release_confusion(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int, ctx: RoundContext
) -> EvaluateReply | Refused:
    """The noised counts of the device's clips, with the ledger entry that accounts for them."""
    cfg = ctx.cfg
    mechanism = evaluation_mechanism(cfg.dp_unit)
    sensitivity = 1
    if cfg.dp_unit == SUBJECT:
        sensitivity = cfg.eval_clips_per_subject
        kept = counted_clips(ctx.data.subjects, sensitivity)
        labels, predicted = labels[kept], predicted[kept]
    confusion = confusion_matrix(labels, predicted, num_classes)
    # One release per round (and one of a pretrained starting model, round 0),
    # each of the whole count vector (q = 1).
    releases = cfg.num_server_rounds + (1 if cfg.initial_model else 0)
    plan = DPPlan(sample_rate=1.0, steps_per_round=1, planned_rounds=releases)
    pinned = ctx.state.pinned_sigma(ctx.run_id, mechanism)
    # Evaluation has its own target; the device's budget still caps it.
    asked = cfg.replace(target_epsilon=cfg.evaluation_epsilon)
    terms = mechanism_terms(ctx.node, asked, mechanism, plan, pinned, cfg.noise_multiplier)
    if isinstance(terms, Refusal):
        return refuse_and_record(ctx, terms, mechanism, 0.0, 1.0, spent_so_far(ctx))
    history = ctx.state.history()
    decision, refusal = budget_refusal(history, (terms.sigma, 1.0, 1), terms)
    if refusal is not None:
        return refuse_and_record(
            ctx, refusal, mechanism, terms.sigma, 1.0, decision.spent, terms.budget
        )
    scale = terms.sigma * sensitivity
    noised = tuple(
        tuple(float(count) + _SECURE.gauss(0.0, scale) for count in row) for row in confusion
    )
    entry = ctx.record(
        update_hash=counts_digest(noised),
        mechanism=mechanism,
        sigma=terms.sigma,
        q=1.0,
        delta=terms.delta,
        budget=terms.budget,
        accountant="rdp",
        event="release",
        steps=1,
        epsilon=decision.predicted,  # the budget check already composed this release
        note=f"clips-per-subject<={sensitivity}" if cfg.dp_unit == SUBJECT else "",
    )
    return EvaluateReply(ctx.data.device_id, noised, scale, encode_entry(entry))
