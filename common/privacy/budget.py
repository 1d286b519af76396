"""Privacy budgets: decide before spending, never after.

A device checks, before it trains, what its cumulative epsilon would be after
the steps it plans for this round; if that exceeds its budget it refuses the
round (a declined reply, and a ``refused`` ledger entry) instead of training.
The server does the same for its client-level releases and stops the run with
Flower's :class:`PrivacyBudgetExhausted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.privacy.accounting import Segment, epsilon_rdp


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool
    spent: float  # cumulative epsilon so far
    predicted: float  # cumulative epsilon if the planned steps are taken
    budget: float  # 0 means no budget

    def reason(self) -> str:
        return (
            f"privacy budget: epsilon would reach {self.predicted:.3f} after this "
            f"round, above the budget {self.budget:g} (spent {self.spent:.3f})"
        )


def check_budget(
    history: Sequence[Segment], planned: Segment, delta: float, budget: float
) -> BudgetDecision:
    """May ``planned`` (sigma, q, steps) be spent on top of ``history``?"""
    spent = epsilon_rdp(history, delta)
    predicted = epsilon_rdp([*history, planned], delta)
    allowed = budget <= 0 or predicted <= budget
    return BudgetDecision(allowed, spent, predicted, budget)


def effective_budget(budget: float, target_epsilon: float) -> float:
    """A budget of 0 means "the run's target epsilon", if one is set (else none)."""
    if budget > 0:
        return budget
    return max(target_epsilon, 0.0)
