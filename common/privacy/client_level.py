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

Accounting is dp-accounting's RDP (the library behind Flower's accountant,
and the auditor's), one release per round at its own recorded σ:

* ``client-sampling-rate`` 0 (the default): every training device is asked
  every round, so each round is the plain Gaussian mechanism and no
  amplification is claimed.
* ``client-sampling-rate`` q in (0, 1): the coordinator Poisson-samples the
  devices of each round with its secret random source, W = q N, and each
  round is the Poisson-subsampled Gaussian at rate q. The amplification holds
  only against someone who does not know who took part: those who see the
  released models, not the coordinator (it draws the sample and sees each
  sampled update), nor anyone who reads its ledgers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.privacy.calibration import smallest_noise_multiplier
from common.privacy.independent import independent_rdp_epsilon

NO_AMPLIFICATION = (
    "no amplification: every training device is asked every round (no client "
    "sampling), so each round is one Gaussian (or, under SecAgg+, Skellam) mechanism"
)
ACCOUNTANT_NAME = "rdp (dp-accounting RdpAccountant, add/remove one device)"


def sampling_assumption(sampling_rate: float) -> str:
    """What the client-level accounting assumes about who takes part in a round."""
    if not 0 < sampling_rate < 1:
        return NO_AMPLIFICATION
    return (
        f"Poisson sampling of devices at q = {sampling_rate:g} per round from the "
        "coordinator's secret random source; amplification by sampling accounted, "
        "holding only against those who do not know who took part (not the coordinator)"
    )


def effective_rate(sampling_rate: float) -> float:
    """The q of each release: 1 when every device is asked (rate 0 or 1)."""
    return sampling_rate if 0 < sampling_rate < 1 else 1.0


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
    denominator: float,
    noise_multiplier: float,
    clipping_norm: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Noise on the sum of clipped updates, divided by the fixed ``denominator`` W.

    Shared by plain aggregation (the server sums updates it can see) and
    SecAgg+ (the server only ever sees the sum).
    """
    n = float(denominator)
    if n <= 0:
        raise ValueError(f"the denominator W must be positive, not {denominator}")
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
        self, noise_multiplier: float, delta: float, budget: float, sampling_rate: float = 0.0
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.budget = budget
        self.q = effective_rate(sampling_rate)
        self.sigmas: list[float] = []

    @property
    def releases(self) -> int:
        return len(self.sigmas)

    def _epsilon_of(self, sigmas: Sequence[float]) -> float:
        return independent_rdp_epsilon(release_history(sigmas, self.q), self.delta)

    def epsilon(self) -> float:
        return self._epsilon_of(self.sigmas) if self.sigmas else 0.0

    def would_exceed(self) -> bool:
        """Would one more release take epsilon over the budget (0 = no budget)?"""
        if self.budget <= 0:
            return False
        return self._epsilon_of([*self.sigmas, self.noise_multiplier]) > self.budget

    def record_release(self, noise_multiplier: float | None = None) -> float:
        """Compose one release at its own σ (default: this accountant's z)."""
        self.sigmas.append(self.noise_multiplier if noise_multiplier is None else noise_multiplier)
        return self.epsilon()


def release_history(sigmas: Sequence[float], q: float) -> list[tuple[float, float, int]]:
    """Releases as (σ, q, steps) segments, consecutive equal σ merged."""
    history: list[tuple[float, float, int]] = []
    for sigma in sigmas:
        if history and history[-1][0] == sigma:
            history[-1] = (sigma, q, history[-1][2] + 1)
        else:
            history.append((float(sigma), q, 1))
    return history


def calibrate_client_noise(
    target_epsilon: float, delta: float, rounds: int, sampling_rate: float = 0.0
) -> float:
    """Smallest z (to 1e-3) whose ``rounds`` releases stay within ``target_epsilon``.

    Calibrated once for the whole planned run, with the same accountant that
    later enforces the budget, so the last planned round is never refused.
    """
    if target_epsilon <= 0 or rounds <= 0:
        raise ValueError("client-level calibration needs a positive target and rounds")
    q = effective_rate(sampling_rate)
    return smallest_noise_multiplier(
        lambda z: independent_rdp_epsilon([(z, q, rounds)], delta), target_epsilon
    )
