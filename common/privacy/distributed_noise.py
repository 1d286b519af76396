"""Distributed Skellam noise under SecAgg+ (Agarwal, Kairouz & Liu, NeurIPS 2021).

Under SecAgg+ the coordinator only ever unmasks the *sum* of the devices'
quantized updates, so client-level noise has to be in that sum before it is
unmasked: each device adds a share of it, on SecAgg+'s own integer lattice,
before masking. Skellam noise (the difference of two Poisson variables) is
used because it is integer-valued and closed under addition: the sum of the
survivors' shares is exactly a Skellam variable whose variance is the sum of
theirs, so the unmasked sum is a Skellam mechanism, accounted as the paper's
Theorem 3.5 does.

The lattice. Flower's SecAgg+ maps ``[-R, R]`` (``clipping_range``) onto the
integers ``0..T`` (``quantization_range``), i.e. ``scale = T / (2R)`` lattice
points per unit. The server picks R a power of two, so every lattice value
``k / scale`` a device hands to Flower is exact in float32, and Flower's own
stochastic rounding then leaves it unchanged: the only rounding is the
device's own (unbiased randomized rounding of ``scale * x``).

Sensitivity, in lattice units, of one device's rounded, clipped update
(add/remove one device): each coordinate moves by less than 1 in rounding,
so ``Δ2 <= scale * C + sqrt(d)`` and ``Δ1 <= sqrt(d) * Δ2``.

Sizing. A target noise multiplier z means a sum noise of variance
``(z Δ2)^2``. SecAgg+ unmasks only if at least ``threshold`` devices' masked
vectors survive (Shamir reconstruction of each survivor's self-mask needs
``threshold`` shares from survivors), so each device adds variance
``(z Δ2)^2 / threshold``: after any dropout the protocol tolerates, the sum
still carries at least the target. More survivors mean more noise; each
release is accounted with the noise its survivors actually added.

Truncation. SecAgg+ clips each device's value to ``[-R, R]``; the server
chooses ``R >= C + TAIL_SIGMAS * σ_share``, and the probability that any
device's noise is clipped in a round is bounded (Bernstein's inequality for
centred Poisson variables, union over coordinates and devices) and
subtracted from δ.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from common.privacy.calibration import smallest_noise_multiplier
from common.privacy.subsampled_rdp import poisson_subsampled_rdp

MECHANISM = "skellam-share"  # the device's mechanism name (node config allowed-mechanisms)
RELEASE_MECHANISM = "dp-fedavg-skellam"  # the server's release entries
RELEASE_ACCOUNTANT = "skellam-rdp (Agarwal et al. 2021, Thm 3.5)"
TAIL_SIGMAS = 14.0
# Flower's SecAgg+ defaults: 2^22 quantization levels summed modulo 2^32, so at
# most 2^10 - 1 devices can be summed without wrapping around.
QUANTIZATION_RANGE = 1 << 22
RDP_ORDERS = tuple(range(2, 257))


def lattice_clipping_range(clipping_norm: float, noise_multiplier: float, threshold: int) -> float:
    """The power of two R for SecAgg+'s ``clipping_range``: room for C and the noise tails.

    One device's share has standard deviation about ``z C / sqrt(threshold)``
    (the sensitivity's rounding term is negligible at this resolution).
    """
    if clipping_norm <= 0 or threshold < 1:
        raise ValueError("clipping_norm must be > 0 and threshold >= 1")
    needed = clipping_norm * (1.0 + TAIL_SIGMAS * noise_multiplier / math.sqrt(threshold))
    return float(2.0 ** math.ceil(math.log2(needed)))


@dataclass(frozen=True)
class SkellamShare:
    """One device's share of the client-level noise, in SecAgg+ lattice units."""

    noise_multiplier: float  # z: the sum's noise std over its L2 sensitivity
    clipping_norm: float  # C, in model units
    dimension: int  # d, coordinates of the update
    clipping_range: float  # R: SecAgg+ quantizes [-R, R]
    threshold: int  # fewest devices whose shares are in any unmasked sum
    quantization_range: int = QUANTIZATION_RANGE  # T

    @property
    def scale(self) -> float:
        return self.quantization_range / (2.0 * self.clipping_range)

    @property
    def l2_sensitivity(self) -> float:
        return self.scale * self.clipping_norm + math.sqrt(self.dimension)

    @property
    def l1_sensitivity(self) -> float:
        return math.sqrt(self.dimension) * self.l2_sensitivity

    @property
    def variance(self) -> float:
        """Each device's Skellam variance per coordinate (lattice units)."""
        return (self.noise_multiplier * self.l2_sensitivity) ** 2 / self.threshold

    def std_in_model_units(self, contributors: int) -> float:
        """The per-coordinate noise std of a sum of ``contributors`` shares, in model units."""
        return math.sqrt(contributors * self.variance) / self.scale

    def release(self, contributors: int, q: float = 1.0) -> SkellamRelease:
        """The mechanism an unmasked sum of ``contributors`` shares is (devices sampled at q)."""
        if contributors < self.threshold:
            raise ValueError(
                f"{contributors} contributors is below the SecAgg+ threshold {self.threshold}: "
                "the protocol cannot have unmasked this sum"
            )
        return SkellamRelease(
            variance=contributors * self.variance,
            l2_sensitivity=self.l2_sensitivity,
            l1_sensitivity=self.l1_sensitivity,
            truncation=self.truncation_probability(contributors),
            q=q,
        )

    def truncation_probability(self, devices: int) -> float:
        """Bound on P(SecAgg+ clips any coordinate of any of ``devices`` noised updates).

        A clipped update has ``|x_i| <= C``; truncation needs ``|noise_i| > s (R - C) - 1``
        lattice units. Skellam(variance v) is a difference of centred Poisson
        variables, sub-gamma with variance v and scale 1/3 (Bernstein), so
        P(noise >= t) <= exp(-t^2 / (2 (v + t / 3))).
        """
        t = self.scale * (self.clipping_range - self.clipping_norm) - 1.0
        if t <= 0:
            return 1.0
        v = self.variance
        tail = math.exp(-(t * t) / (2.0 * (v + t / 3.0)))
        return min(1.0, 2.0 * self.dimension * devices * tail)


@dataclass(frozen=True)
class SkellamRelease:
    """One unmasked, noised sum: Skellam noise of ``variance`` per coordinate (lattice units)."""

    variance: float
    l2_sensitivity: float
    l1_sensitivity: float
    truncation: float = 0.0  # added to δ
    q: float = 1.0  # Poisson rate of devices (amplification against who does not know the sample)

    @property
    def effective_noise_multiplier(self) -> float:
        """The Gaussian-equivalent z: noise std over L2 sensitivity."""
        return math.sqrt(self.variance) / self.l2_sensitivity

    def rdp(self, orders: Sequence[int] = RDP_ORDERS) -> np.ndarray:
        """Theorem 3.5 of Agarwal et al. (2021), integer orders α > 1.

        ε(α) <= α Δ2² / (2μ) + min(((2α - 1) Δ2² + 6 Δ1) / (4μ²), 3 Δ1 / (2μ)),
        μ the variance of the Skellam noise, Δ1, Δ2 the L1, L2 sensitivities.
        With q < 1 the devices were Poisson-sampled, and Zhu & Wang's general
        bound (:mod:`common.privacy.subsampled_rdp`) amplifies it.
        """
        a = np.asarray(orders, dtype=np.float64)
        if self.q < 1:
            every = self.unsampled().rdp(range(2, int(a.max()) + 1))
            return poisson_subsampled_rdp(every, self.q)[a.astype(int) - 2]
        mu, d1, d2 = self.variance, self.l1_sensitivity, self.l2_sensitivity
        gaussian = a * d2**2 / (2.0 * mu)
        correction = np.minimum(((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu))
        return np.asarray(gaussian + correction)

    def unsampled(self) -> SkellamRelease:
        """The same release without the sampling: what holds against whoever drew the sample."""
        return dataclasses.replace(self, q=1.0)

    def parameters(self) -> str:
        """The release's parameters as its signed ledger entry carries them (for the audit)."""
        return (
            f"{RELEASE_ACCOUNTANT}; variance={self.variance!r} l2={self.l2_sensitivity!r} "
            f"l1={self.l1_sensitivity!r} truncation={self.truncation!r} q={self.q!r}"
        )

    @classmethod
    def from_parameters(cls, accountant: str) -> SkellamRelease:
        """The release a ledger entry's ``accountant`` field describes (see :meth:`parameters`)."""
        fields = dict(re.findall(r"(\w+)=(\S+)", accountant))
        try:
            return cls(
                variance=float(fields["variance"]),
                l2_sensitivity=float(fields["l2"]),
                l1_sensitivity=float(fields["l1"]),
                truncation=float(fields["truncation"]),
                q=float(fields.get("q", 1.0)),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"a {RELEASE_MECHANISM} entry's accountant field must carry variance, l2, l1 "
                f"and truncation; {accountant!r} does not ({exc})"
            ) from None


def skellam_epsilon(releases: Sequence[SkellamRelease], delta: float) -> float:
    """ε at ``delta`` of the composition of ``releases`` (RDP adds up; truncation comes off δ)."""
    if not releases:
        return 0.0
    # Imported here: dp-accounting's package import pulls in scipy.signal (1.6 s), which
    # every fresh ClientApp process would pay for a noise-share policy check alone.
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    remaining = delta - sum(r.truncation for r in releases)
    if remaining <= 0:
        return math.inf
    # Rounds at one noise level are one release repeated: its RDP is computed once.
    rdp = np.sum([r.rdp() * n for r, n in Counter(releases).items()], axis=0)
    epsilon, _ = compute_epsilon(RDP_ORDERS, rdp, remaining)
    return float(epsilon)


def sample_skellam(variance: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Integer Skellam noise of ``variance``: Poisson(v/2) - Poisson(v/2)."""
    if variance <= 0:
        return np.zeros(size, dtype=np.int64)
    half = variance / 2.0
    return rng.poisson(half, size).astype(np.int64) - rng.poisson(half, size).astype(np.int64)


def randomized_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unbiased rounding to the integers: floor(x) + Bernoulli(frac(x))."""
    low = np.floor(x)
    return (low + (rng.random(x.shape) < (x - low))).astype(np.int64)


class SkellamAccountant:
    """Composes one Skellam release per round; checks the budget before each one."""

    def __init__(self, delta: float, budget: float) -> None:
        self.delta = delta
        self.budget = budget
        self.history: list[SkellamRelease] = []

    @property
    def releases(self) -> int:
        return len(self.history)

    def epsilon(self) -> float:
        return skellam_epsilon(self.history, self.delta)

    def would_exceed(self, planned: SkellamRelease) -> bool:
        """Would ``planned`` take ε over the budget (0 = no budget)?"""
        if self.budget <= 0:
            return False
        return skellam_epsilon([*self.history, planned], self.delta) > self.budget

    def record_release(self, release: SkellamRelease) -> float:
        self.history.append(release)
        return self.epsilon()


def calibrate_skellam_noise(
    target_epsilon: float,
    delta: float,
    rounds: int,
    release_for: Callable[[float], SkellamRelease],
) -> float:
    """Smallest z (to 1e-3) whose ``rounds`` releases stay within the target.

    ``release_for(z)`` is the release one round is accounted as at z: the
    caller's, so that calibration, the budget check and the ledger use one
    definition (the least noisy sum SecAgg+ can unmask, ``threshold`` shares).
    """
    if target_epsilon <= 0 or rounds <= 0:
        raise ValueError("distributed-noise calibration needs a positive target and rounds")

    def eps(z: float) -> float:
        return skellam_epsilon([release_for(z)] * rounds, delta)

    return smallest_noise_multiplier(eps, target_epsilon)
