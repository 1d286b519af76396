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
"""

from __future__ import annotations

import secrets

import numpy as np

from client.privacy_policy import Refusal, budget_refusal, mechanism_terms
from client.training_round import Refused, RoundContext, refuse_and_record, spent_so_far
from common.privacy.dp_plan import DPPlan
from common.privacy.ledger import encode_entry
from common.wire import EvaluateReply, counts_digest

GAUSSIAN_COUNTS = "gaussian-counts"
_SECURE = secrets.SystemRandom()


def release_confusion(confusion: np.ndarray, ctx: RoundContext) -> EvaluateReply | Refused:
    """The noised counts, with the signed ledger entry that accounts for them."""
    cfg = ctx.cfg
    # One release per round, each of the whole count vector (q = 1).
    plan = DPPlan(sample_rate=1.0, steps_per_round=1, planned_rounds=cfg.num_server_rounds)
    pinned = ctx.state.pinned_sigma(ctx.run_id, GAUSSIAN_COUNTS)
    # Evaluation has its own target; the device's budget still caps it.
    asked = cfg.replace(target_epsilon=cfg.evaluation_epsilon)
    terms = mechanism_terms(ctx.node, asked, GAUSSIAN_COUNTS, plan, pinned, cfg.noise_multiplier)
    if isinstance(terms, Refusal):
        return refuse_and_record(ctx, terms, GAUSSIAN_COUNTS, 0.0, 1.0, spent_so_far(ctx))
    history = ctx.state.history()
    decision, refusal = budget_refusal(history, (terms.sigma, 1.0, 1), terms)
    if refusal is not None:
        return refuse_and_record(
            ctx, refusal, GAUSSIAN_COUNTS, terms.sigma, 1.0, decision.spent, terms.budget
        )
    noised = tuple(
        tuple(float(count) + _SECURE.gauss(0.0, terms.sigma) for count in row) for row in confusion
    )
    entry = ctx.record(
        update_hash=counts_digest(noised),
        mechanism=GAUSSIAN_COUNTS,
        sigma=terms.sigma,
        q=1.0,
        delta=terms.delta,
        budget=terms.budget,
        accountant="rdp",
        event="release",
        steps=1,
        epsilon=decision.predicted,  # the budget check already composed this release
        note="",
    )
    return EvaluateReply(ctx.data.device_id, noised, terms.sigma, encode_entry(entry))
