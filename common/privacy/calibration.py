"""The one bisection behind every "smallest noise within the target" calibration."""

from __future__ import annotations

from collections.abc import Callable


def smallest_noise_multiplier(
    epsilon_at: Callable[[float], float], target_epsilon: float, tolerance: float = 1e-3
) -> float:
    """Smallest z (to ``tolerance``, rounded up) with ``epsilon_at(z) <= target_epsilon``.

    ``epsilon_at`` must decrease with z. The answer errs on the side of more
    noise: the z returned always meets the target.
    """
    low, high = tolerance, 1.0
    while epsilon_at(high) > target_epsilon:
        high *= 2.0
    while high - low > tolerance:
        mid = (low + high) / 2
        low, high = (low, mid) if epsilon_at(mid) <= target_epsilon else (mid, high)
    return high
