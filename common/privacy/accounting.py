"""Sample-level DP-SGD accounting from a recorded (sigma, q, steps) history.

A history is the list Opacus' accountants keep: one ``(noise_multiplier,
sample_rate, num_steps)`` segment per change of parameters. Devices persist it
across rounds (and restarts) so that epsilon is cumulative over the whole run,
never per round. Note that ``len(history)`` counts segments, not steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

Segment = tuple[float, float, int]


def total_steps(history: Iterable[Segment]) -> int:
    """Number of noisy gradient steps in a history."""
    return sum(int(steps) for _, _, steps in history)


def epsilon_rdp(history: Sequence[Segment], delta: float) -> float:
    """Cumulative epsilon from Renyi DP (the figure fedmer reports)."""
    if not history:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(accountant.get_epsilon(delta=delta))


def epsilon_prv(history: Sequence[Segment], delta: float) -> float:
    """Cumulative epsilon from the PRV accountant: a tighter second opinion."""
    if not history:
        return 0.0
    accountant = PRVAccountant()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(accountant.get_epsilon(delta=delta))


def calibrate_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """Sigma that spends exactly ``target_epsilon`` (RDP) over ``steps`` planned steps.

    Called once for the whole planned run: calibrating per round would let the
    total exceed the target.
    """
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be positive, got {target_epsilon}")
    if steps <= 0:
        raise ValueError(f"planned steps must be positive, got {steps}")
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
            epsilon_tolerance=0.005,
        )
    )
