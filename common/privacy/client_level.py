"""Client-level DP-FedAvg: clip each device's update, add Gaussian noise to the sum.

Protects a device's whole participation in a round (all its clips, all its
subjects), unlike DP-SGD which protects one clip.

Neighbouring relation: add or remove one device. Per round, the sum of
updates clipped to L2 norm ``C`` changes by at most ``C`` when one device is
added or removed, so adding N(0, (z C)^2) to the sum is a Gaussian mechanism
with noise multiplier ``z``. The noised sum is divided by a **fixed
denominator**, the expected number of participants W (the census's training
devices, public before the round), as McMahan et al. (2018) do: dividing by
the actual number of contributors would make the divisor itself depend on the
neighbouring dataset, which this accounting does not cover.

Accounting uses Flower's RDP accountant (backed by ``dp-accounting``) with
**no sampling amplification**: every training device is asked every round, so
there is no random subsampling to amplify privacy, and claiming it would
understate epsilon. Each release is composed with its own recorded σ, so a
resumed run replays exactly what was spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from common.privacy.calibration import smallest_noise_multiplier

SAMPLING_ASSUMPTION = (
    "no amplification: every training device is asked every round (no client "
    "sampling), so each round is one Gaussian (or, under SecAgg+, Skellam) mechanism"
)
ACCOUNTANT_NAME = "rdp (flwr RdpAccountant, dp-accounting backend)"


def update_norm(update: Sequence[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update)))


def clip_update(update: Sequence[np.ndarray], clipping_norm: float) -> list[np.ndarray]:
    """Scale an update (new - old weights) down to L2 norm at most ``clipping_norm``."""
    norm = update_norm(update)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return [np.asarray(a, dtype=np.float32) * np.float32(scale) for a in update]


def sum_updates(updates: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Coordinate-wise sum of (clipped) updates: what SecAgg+ reveals, and all it reveals."""
    if not updates:
        raise ValueError("no updates to sum")
    return [
        np.asarray(np.sum([u[i] for u in updates], axis=0, dtype=np.float64))
        for i in range(len(updates[0]))
    ]


def add_sum_noise(
    summed: Sequence[np.ndarray],
    denominator: int,
    noise_multiplier: float,
    clipping_norm: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Noise on the sum of clipped updates, divided by the fixed ``denominator`` W.

    Shared by plain aggregation (the server sums updates it can see) and
    SecAgg+ (the server only ever sees the sum).
    """
    n = max(int(denominator), 1)
    std = noise_multiplier * clipping_norm
    return [
        ((np.asarray(s, dtype=np.float64) + rng.normal(0.0, std, size=np.shape(s))) / n).astype(
            np.float32
        )
        if std > 0
        else (np.asarray(s, dtype=np.float64) / n).astype(np.float32)
        for s in summed
    ]


class ClientLevelAccountant:
    """Composes one Gaussian release per round; checks the budget before each release."""

    def __init__(
        self, noise_multiplier: float, delta: float, population: int, budget: float
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.budget = budget
        self._population = max(population, 1)
        self._accountant = _new_accountant(delta, self._population)
        self.releases = 0

    def _event(self, noise_multiplier: float | None = None) -> GaussianPrivacyEvent:
        # No amplification: the event is the plain Gaussian mechanism whatever
        # the sample size; sample_size = population keeps Flower's API happy.
        return GaussianPrivacyEvent(
            noise_multiplier=self.noise_multiplier
            if noise_multiplier is None
            else noise_multiplier,
            sample_size=self._population,
            population_size=self._population,
        )

    def epsilon(self) -> float:
        return self._accountant.get_epsilon(self.delta) if self.releases else 0.0

    def would_exceed(self) -> bool:
        """Would one more release take epsilon over the budget (0 = no budget)?"""
        if self.budget <= 0:
            return False
        return self._accountant.would_exceed(self._event(), max_epsilon=self.budget)

    def record_release(self, noise_multiplier: float | None = None) -> float:
        """Compose one release at its own σ (default: this accountant's z)."""
        self._accountant.compose(self._event(noise_multiplier))
        self.releases += 1
        return self.epsilon()


def calibrate_client_noise(target_epsilon: float, delta: float, rounds: int) -> float:
    """Smallest z (to 1e-3) whose ``rounds`` releases stay within ``target_epsilon``.

    Calibrated once for the whole planned run, with the same accountant that
    later enforces the budget, so the last planned round is never refused.
    """
    if target_epsilon <= 0 or rounds <= 0:
        raise ValueError("client-level calibration needs a positive target and rounds")

    def eps(z: float) -> float:
        accountant = _new_accountant(delta, 1)
        accountant.compose(GaussianPrivacyEvent(z, 1, 1), count=rounds)
        return accountant.get_epsilon(delta)

    return smallest_noise_multiplier(eps, target_epsilon)


def _new_accountant(delta: float, population: int) -> RdpAccountant:
    return RdpAccountant(
        PrivacyConfig(
            target_delta=delta,
            population_size=population,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
