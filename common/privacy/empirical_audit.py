"""Statistics of the one-run empirical privacy audit (Steinke, Nasr & Jagielski, 2023).

``m`` canaries are each inserted into the training data independently with
probability 1/2. After one training run the auditor scores every canary,
guesses "in" for the ``k`` highest scores and "out" for the ``k`` lowest, and
abstains on the rest. If training is (epsilon, delta)-DP, the number of
correct guesses is stochastically dominated by a binomial with success
probability e^epsilon / (1 + e^epsilon) (plus a delta term), so a high count
yields a lower bound on epsilon at a chosen confidence.

Only the statistics live here (with the Gaussian-DP fit of canary scores);
the experiment that trains with canaries is ``simulations/white_box_audit.py``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def guess_membership(scores: np.ndarray, included: np.ndarray, k: int) -> tuple[int, int]:
    """Guess "in" for the k top scores and "out" for the k bottom ones; count hits."""
    k = min(k, len(scores) // 2)
    order = np.argsort(scores)
    correct = int(included[order[-k:]].sum()) + int((~included[order[:k]]).sum())
    return correct, 2 * k


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[>= v of r guesses correct] under (epsilon, delta)-DP (Steinke et al., Thm. 5.2)."""
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))
    alpha, cumulative = 0.0, 0.0
    for i in range(1, v + 1):
        cumulative += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, cumulative / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float) -> float:
    """The largest epsilon rejected at ``confidence`` by v correct of r guesses."""
    p = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) > p:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) <= p:
        high *= 2.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if p_value(m, r, v, mid, delta) <= p else (low, mid)
    return low


def gdp_mu(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Separation of two score samples in pooled standard deviations (μ of μ-GDP)."""
    spread = math.sqrt((np.var(in_scores, ddof=1) + np.var(out_scores, ddof=1)) / 2)
    return float((np.mean(in_scores) - np.mean(out_scores)) / max(spread, 1e-300))


def gdp_mu_lower_bound(
    in_scores: np.ndarray,
    out_scores: np.ndarray,
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """μ and its one-sided lower confidence bound (percentile bootstrap)."""
    estimate = gdp_mu(in_scores, out_scores)
    boots = [
        gdp_mu(
            rng.choice(in_scores, len(in_scores), replace=True),
            rng.choice(out_scores, len(out_scores), replace=True),
        )
        for _ in range(resamples)
    ]
    return estimate, float(np.quantile(boots, 1.0 - confidence))


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε at δ of a μ-GDP mechanism (Dong, Roth & Su 2019, Cor. 2.13); 0 for μ <= 0."""
    if mu <= 0:
        return 0.0

    def delta_at(epsilon: float) -> float:
        return float(
            stats.norm.cdf(-epsilon / mu + mu / 2)
            - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2)
        )

    if delta_at(0.0) <= delta:
        return 0.0
    low, high = 0.0, 1.0
    while delta_at(high) > delta:
        high *= 2.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if delta_at(mid) > delta else (low, mid)
    return high
