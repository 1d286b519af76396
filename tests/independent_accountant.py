"""An accountant that shares no code with fedmer or Opacus: Google's dp-accounting."""

from __future__ import annotations

from collections.abc import Sequence

import dp_accounting
from dp_accounting import pld, rdp


def _event(history: Sequence[tuple[float, float, int]]) -> dp_accounting.DpEvent:
    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)),
                int(steps),
            )
            for sigma, q, steps in history
        ]
    )


def rdp_epsilon(history: Sequence[tuple[float, float, int]], delta: float) -> float:
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    accountant = rdp.RdpAccountant(orders)
    accountant.compose(_event(history))
    return float(accountant.get_epsilon(delta))


def pld_epsilon(history: Sequence[tuple[float, float, int]], delta: float) -> float:
    """Tight numerical accounting (privacy loss distributions)."""
    accountant = pld.PLDAccountant()
    accountant.compose(_event(history))
    return float(accountant.get_epsilon(delta))


def ledger_rdp_epsilon(entries: Sequence[dict], delta: float) -> float:
    """RDP ε of the spends in signed ledger entries, from each one's (σ, q, steps)."""
    orders = [1 + x / 10.0 for x in range(10, 100)] + list(range(12, 128))
    accountant = rdp.RdpAccountant(orders)
    for e in entries:
        if e["event"] in ("train", "release") and int(e["steps"]) > 0:
            sampled = dp_accounting.PoissonSampledDpEvent(
                float(e["q"]), dp_accounting.GaussianDpEvent(float(e["sigma"]))
            )
            accountant.compose(sampled, int(e["steps"]))
    return float(accountant.get_epsilon(delta))
