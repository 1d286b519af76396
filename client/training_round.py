"""One round of local training on the device, within its privacy policy.

Private rounds (DP-SGD) are held against the device's policy and budget
before any step is taken; a refusal is signed into the ledger before the
reply leaves. A non-private round (``dp-sgd = false``) happens only where the
node config allows it, and is recorded as an unbounded spend. Either way the
reply carries only the privacy parameters, never a loss, an accuracy or an
example count.
"""

from __future__ import annotations

import torch
from torch import nn

from client.dp_training import DPSettings, device_seed, train_with_dp
from client.plain_training import LocalSchedule, train_plain
from client.privacy_policy import Refusal, budget_refusal, mechanism_terms
from client.round_context import Refused, RoundContext, refuse_and_record, spent_so_far
from client.subject_dp_sgd import subject_plan, train_subject_level
from common.privacy.accounting import epsilon_prv
from common.privacy.dp_plan import DPPlan, steps_per_epoch
from common.privacy.ledger import encode_entry
from common.privacy.units import SUBJECT, training_mechanism
from common.wire import TrainMetrics


def train_round(model: nn.Module, ctx: RoundContext) -> tuple[TrainMetrics, str] | Refused:
    """Train ``model`` in place for one round; the metrics and the signed ledger line."""
    # Subnormal floats (gradients of saturated units, ~1e-38) take the CPU's slow
    # path: without flushing them to zero a round's backward passes grew ~1.8x
    # slower by round 10 (docs/benchmarks.md). Flushing changes values only below
    # 1.2e-38, far under any clipping bound or noise scale. Set here, not at
    # import: it is a CPU flag of the thread that trains.
    torch.set_flush_denormal(True)
    if ctx.node.single_person and ctx.data.num_subjects > 1:
        # The coordinator counts its client-level noise as this device's person's
        # guarantee only because the device said it holds one person.
        detail = f"the node config says single-person; the data holds {ctx.data.num_subjects}"
        refusal = Refusal("not-single-person", detail)
        return refuse_and_record(ctx, refusal, "none", 0.0, 1.0, spent_so_far(ctx))
    if ctx.cfg.dp_sgd:
        return _private_round(model, ctx)
    if not ctx.node.allow_non_private:
        detail = "the run asks for training without DP-SGD; allow-non-private is not set"
        refusal = Refusal("non-private-not-allowed", detail)
        return refuse_and_record(ctx, refusal, "none", 0.0, 1.0, spent_so_far(ctx))
    return _non_private_round(model, ctx)


def _private_round(model: nn.Module, ctx: RoundContext) -> tuple[TrainMetrics, str] | Refused:
    cfg, data = ctx.cfg, ctx.data
    mechanism = training_mechanism(cfg.dp_unit)
    by_subject = cfg.dp_unit == SUBJECT
    if by_subject:
        # q and steps over the device's subjects: the subject is the record.
        plan = subject_plan(
            data.num_subjects, cfg.batch_subjects, cfg.local_epochs, cfg.num_server_rounds
        )
    else:
        plan = DPPlan.for_device(len(data), cfg.batch_size, cfg.local_epochs, cfg.num_server_rounds)
    pinned = ctx.state.pinned_sigma(ctx.run_id, mechanism)
    terms = mechanism_terms(ctx.node, cfg, mechanism, plan, pinned, cfg.noise_multiplier)
    if isinstance(terms, Refusal):
        return refuse_and_record(ctx, terms, mechanism, 0.0, plan.sample_rate, spent_so_far(ctx))
    history = ctx.state.history()
    decision, refusal = budget_refusal(
        history, (terms.sigma, plan.sample_rate, plan.steps_per_round), terms
    )
    if refusal is not None:
        return refuse_and_record(
            ctx, refusal, mechanism, terms.sigma, plan.sample_rate, decision.spent, terms.budget
        )
    # Secret sampling unless the operator switched on the non-private debug mode.
    seed = None
    if ctx.node.seeded_sampling:
        seed = device_seed(cfg.seed, ctx.server_round, data.device_id)
    dp = DPSettings(terms.sigma, cfg.max_grad_norm, terms.delta)
    if by_subject:
        result = train_subject_level(
            model,
            data.features,
            data.labels,
            data.subjects,
            plan=plan,
            learning_rate=cfg.learning_rate,
            dp=dp,
            history=history,
            seed=seed,
        )
    else:
        result = train_with_dp(
            model,
            data.features,
            data.labels,
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            dp=dp,
            history=history,
            seed=seed,
        )
    # fsynced before the reply leaves: an acknowledged spend is never lost.
    entry = ctx.record(
        update_hash=ctx.model_digest(model),
        mechanism=mechanism,
        sigma=terms.sigma,
        q=plan.sample_rate,
        delta=terms.delta,
        budget=terms.budget,
        accountant="rdp",
        event="train",
        steps=result.steps,
        epsilon=result.epsilon,
        note="",
    )
    metrics = TrainMetrics(
        epsilon=result.epsilon,
        epsilon_prv=epsilon_prv(result.history, terms.delta),
        delta=terms.delta,
        noise_multiplier=terms.sigma,
        sample_rate=result.sample_rate,
        steps=result.steps,
        total_steps=result.total_steps,
    )
    return metrics, encode_entry(entry)


def _non_private_round(model: nn.Module, ctx: RoundContext) -> tuple[TrainMetrics, str]:
    """Plain SGD, ε = ∞: recorded in the ledger like any other round, as an unbounded spend.

    Once a device has trained without noise, no later figure of its can claim
    a finite ε.
    """
    cfg, data = ctx.cfg, ctx.data
    seed = device_seed(cfg.seed, ctx.server_round, data.device_id)
    schedule = LocalSchedule(cfg.local_epochs, cfg.batch_size, cfg.learning_rate)
    train_plain(model, data.features, data.labels, schedule, seed)
    steps = cfg.local_epochs * steps_per_epoch(len(data), cfg.batch_size)
    entry = ctx.record(
        update_hash=ctx.model_digest(model),
        mechanism="none",
        sigma=0.0,
        q=1.0,
        delta=cfg.delta,
        budget=0.0,
        accountant="none",
        event="train",
        steps=steps,
        epsilon=float("inf"),
        note="trained without DP (allow-non-private)",
    )
    metrics = TrainMetrics(
        epsilon=float("inf"),
        epsilon_prv=float("inf"),
        delta=cfg.delta,
        noise_multiplier=0.0,
        sample_rate=1.0,
        steps=steps,
        total_steps=steps,
    )
    return metrics, encode_entry(entry)
