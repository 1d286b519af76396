"""Poisson subsampling of any mechanism whose RDP is known at integer orders.

dp-accounting amplifies only the mechanisms it knows (Gaussian, Laplace,
...); the distributed Skellam noise under SecAgg+ is not one of them. Zhu &
Wang's general upper bound (ICML 2019, "Poisson Subsampled Rényi
Differential Privacy", Theorem 6) amplifies any mechanism M with RDP ε(ℓ) at
the integer orders ℓ = 2..α: with each record (here: each device) taken
independently with probability q,

    ε'(α) <= log( (1-q)^(α-1) (1 + (α-1) q)
                  + C(α,2) q² (1-q)^(α-2) e^{ε(2)}
                  + 3 Σ_{ℓ=3..α} C(α,ℓ) q^ℓ (1-q)^(α-ℓ) e^{(ℓ-1) ε(ℓ)} ) / (α - 1).

Subsampling never hurts (joint convexity of the Rényi divergence), so the
result is also capped by ε(α) itself. For the Gaussian mechanism the bound
sits above the tight figure (its sum without the factor 3): the tests check
both that it never falls below dp-accounting's and that it stays close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln, logsumexp


def poisson_subsampled_rdp(base: Sequence[float] | np.ndarray, q: float) -> np.ndarray:
    """RDP at orders 2..len(base)+1 of M under Poisson sampling at ``q``.

    ``base[i]`` is M's RDP at the integer order ``i + 2``; the bound at order
    α uses the base at every order 2..α, so ``base`` must start at order 2.
    """
    eps = np.asarray(base, dtype=np.float64)
    if not 0 <= q <= 1:
        raise ValueError(f"sampling rate q must be in [0, 1], got {q}")
    if q == 1 or eps.size == 0:
        return eps.copy()
    if q == 0:
        return np.zeros_like(eps)
    log_q, log_1q = math.log(q), math.log1p(-q)
    out = np.empty_like(eps)
    for i in range(eps.size):
        alpha = i + 2
        ell = np.arange(2, alpha + 1)
        log_binom = gammaln(alpha + 1) - gammaln(ell + 1) - gammaln(alpha - ell + 1)
        factor = np.where(ell == 2, 0.0, math.log(3.0))
        terms = factor + log_binom + ell * log_q + (alpha - ell) * log_1q + (ell - 1) * eps[: i + 1]
        first = (alpha - 1) * log_1q + math.log1p((alpha - 1) * q)
        out[i] = min(float(logsumexp([first, *terms])) / (alpha - 1), float(eps[i]))
    return out
