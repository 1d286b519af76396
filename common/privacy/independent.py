"""A second, independent accountant for the auditor: Google's ``dp-accounting``.

fedmer's devices account with Opacus (RDP); the auditor recomputes every
epsilon here, with code that shares nothing with Opacus, both with RDP (the
bound devices claim) and with PLD (numerically tight: a claim below it
under-reports the spend).

RDP orders start at 2: below that, dp-accounting's series for the sampled
Gaussian does not converge at large sampling rates and it drops those orders
anyway (after 1000 slow iterations each). Opacus keeps orders down to 1.1, so
at large q (>= 1/4) the two RDP figures differ by up to about 0.5 %; at small
q they agree to about 1e-4. The auditor's default tolerance (1 %) covers this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from common.privacy.accounting import Segment

if TYPE_CHECKING:
    import dp_accounting

# dp-accounting is imported where it computes, not at module import: its package
# import pulls in scipy.signal (about 1 s), and Flower starts a fresh ClientApp
# process for every message, whose handlers reach this module through the
# device's client-level clipping and policy checks without ever accounting.

RDP_ORDERS = tuple([1 + x / 10.0 for x in range(10, 100)] + list(range(12, 128)))


def _event(history: Sequence[Segment]) -> dp_accounting.DpEvent:
    import dp_accounting

    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(
                    float(q), dp_accounting.GaussianDpEvent(float(sigma))
                ),
                int(steps),
            )
            for sigma, q, steps in history
        ]
    )


def _noiseless(history: Sequence[Segment]) -> bool:
    return any(float(s) <= 0 and int(n) > 0 for s, _, n in history)


def independent_rdp_epsilon(history: Sequence[Segment], delta: float) -> float:
    return _rdp(tuple(map(tuple, history)), delta)


def independent_pld_epsilon(history: Sequence[Segment], delta: float) -> float:
    return _pld(tuple(map(tuple, history)), delta)


# Cached: devices of one run usually share the same histories, and the auditor
# evaluates every prefix of every chain.
@lru_cache(maxsize=4096)
def _rdp(history: tuple[Segment, ...], delta: float) -> float:
    if not history:
        return 0.0
    if _noiseless(history):
        return math.inf
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant(list(RDP_ORDERS))
    accountant.compose(_event(history))
    return float(accountant.get_epsilon(delta))


@lru_cache(maxsize=4096)
def _pld(history: tuple[Segment, ...], delta: float) -> float:
    if not history:
        return 0.0
    if _noiseless(history):
        return math.inf
    # A 1e-3 discretization is 10x faster than the default and pessimistic
    # (it can only raise epsilon), by < 1e-3 relative at the sizes fedmer uses.
    from dp_accounting import pld

    accountant = pld.PLDAccountant(value_discretization_interval=1e-3)
    accountant.compose(_event(history))
    return float(accountant.get_epsilon(delta))
