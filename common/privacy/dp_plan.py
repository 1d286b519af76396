"""A device's DP-SGD plan for a run: sampling rate, steps and the σ that fits a target.

The one place σ is calibrated from a target (ε, δ): once, for every step the
device plans to take over the whole run, so that cumulative ε after the last
round is at most the target. The ClientApp and the empirical audit both use
it; nothing else calibrates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.privacy.accounting import calibrate_noise_multiplier


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Opacus' Poisson loader runs ceil(n / B) steps per epoch with q = 1 / that."""
    return max(1, math.ceil(num_examples / batch_size))


def sample_rate_for(num_examples: int, batch_size: int) -> float:
    """The Poisson sampling rate q that Opacus will use for this data size."""
    return 1.0 / steps_per_epoch(num_examples, batch_size)


@dataclass(frozen=True)
class DPPlan:
    """Sampling rate and steps of one round, and of the whole planned run."""

    sample_rate: float
    steps_per_round: int
    planned_rounds: int

    @classmethod
    def for_device(
        cls, num_examples: int, batch_size: int, local_epochs: int, rounds: int
    ) -> DPPlan:
        return cls(
            sample_rate=sample_rate_for(num_examples, batch_size),
            steps_per_round=local_epochs * steps_per_epoch(num_examples, batch_size),
            planned_rounds=rounds,
        )

    @property
    def planned_steps(self) -> int:
        return self.steps_per_round * self.planned_rounds

    def noise_for(self, target_epsilon: float, delta: float) -> float:
        """σ such that all planned steps together spend at most ``target_epsilon``."""
        return calibrate_noise_multiplier(
            target_epsilon, delta, self.sample_rate, self.planned_steps
        )
