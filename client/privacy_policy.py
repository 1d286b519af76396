"""The device decides its limits: a request is held against the device's own policy.

The run config is the coordinator's request. The node config's policy
(:class:`common.node_config.NodeConfig`: ε budget, maximum δ, minimum noise,
allowed mechanisms) bounds it. A run config may tighten the policy (a smaller
budget or δ, more noise), never loosen it. A request outside the policy is
refused with a fixed code from :data:`common.wire.DECLINE_CODES`. The caller
records every refusal in the ledger before it replies.

The device accounts at δ = the run's δ, which the policy caps: a coordinator
that asks for a larger δ is refused, because a larger δ would let the same
noise claim a smaller ε.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.node_config import NodeConfig
from common.privacy.accounting import Segment
from common.privacy.budget import BudgetDecision, check_budget
from common.privacy.distributed_noise import MECHANISM as MECHANISM_SKELLAM
from common.privacy.dp_plan import DPPlan
from common.privacy.units import CLIP, MECHANISM_UNITS, SUBJECT
from common.run_config import RunConfig


@dataclass(frozen=True)
class Terms:
    """What the device will do for one release: σ, δ, the budget in force."""

    sigma: float
    delta: float
    budget: float


@dataclass(frozen=True)
class Refusal:
    code: str  # a key of common.wire.DECLINE_CODES
    detail: str  # for the device's own log and ledger note, never sent

    def note(self) -> str:
        return f"{self.code}: {self.detail}"[:200]


def accounting_delta(node: NodeConfig, cfg: RunConfig) -> float:
    """The δ this device accounts at: the run's, never above the policy's maximum."""
    return min(cfg.delta, node.max_delta)


def effective_budget(node: NodeConfig, cfg: RunConfig) -> float:
    """The node's budget, tightened by the run's ``epsilon-budget`` when that is smaller."""
    if cfg.epsilon_budget > 0:
        return min(node.epsilon_budget, cfg.epsilon_budget)
    return node.epsilon_budget


def mechanism_terms(
    node: NodeConfig,
    cfg: RunConfig,
    mechanism: str,
    plan: DPPlan,
    pinned_sigma: float | None,
    requested_sigma: float,
) -> Terms | Refusal:
    """The terms of a private release within the policy, or why there are none.

    σ is ``pinned_sigma`` when this run already chose one (it is calibrated
    once per run, for every step the run plans); otherwise it is calibrated
    for the run's target ε (capped by the budget), or ``requested_sigma``
    when the run sets no target.
    """
    if mechanism not in node.mechanisms:
        return Refusal("mechanism-not-allowed", f"{mechanism} not in {sorted(node.mechanisms)}")
    if node.privacy_unit == SUBJECT and MECHANISM_UNITS.get(mechanism, CLIP) == CLIP:
        return Refusal(
            "unit-below-policy", f"{mechanism} protects one clip; privacy-unit is subject"
        )
    if node.epsilon_budget <= 0:
        return Refusal("no-budget", "node config sets no epsilon-budget")
    if cfg.delta > node.max_delta:
        return Refusal(
            "delta-above-policy", f"run delta {cfg.delta:g} > max-delta {node.max_delta:g}"
        )
    budget = effective_budget(node, cfg)
    if pinned_sigma is not None:
        sigma = pinned_sigma
    elif cfg.target_epsilon > 0:
        sigma = plan.noise_for(min(cfg.target_epsilon, budget), cfg.delta)
    else:
        sigma = requested_sigma
    if sigma < node.min_noise_multiplier:
        return Refusal(
            "noise-below-policy",
            f"noise multiplier {sigma:.4g} < min-noise-multiplier {node.min_noise_multiplier:g}",
        )
    return Terms(sigma=sigma, delta=cfg.delta, budget=budget)


def budget_refusal(
    history: Sequence[Segment], planned: Segment, terms: Terms
) -> tuple[BudgetDecision, Refusal | None]:
    """The budget decision (ε spent and after ``planned``), and a refusal if it is over."""
    decision = check_budget(history, planned, terms.delta, terms.budget)
    if not decision.allowed:
        return decision, Refusal("budget-exhausted", decision.reason())
    return decision, None


def noise_share_refusal(node: NodeConfig, noise_multiplier: float) -> Refusal | None:
    """Why this device will not add its share of distributed noise at ``noise_multiplier``.

    The share is the device's own: the coordinator cannot make it smaller
    than the policy's minimum noise multiplier allows.
    """
    if MECHANISM_SKELLAM not in node.mechanisms:
        return Refusal(
            "mechanism-not-allowed", f"{MECHANISM_SKELLAM} not in {sorted(node.mechanisms)}"
        )
    if noise_multiplier < node.min_noise_multiplier:
        return Refusal(
            "noise-below-policy",
            f"client-level noise multiplier {noise_multiplier:.4g} < "
            f"min-noise-multiplier {node.min_noise_multiplier:g}",
        )
    return None
