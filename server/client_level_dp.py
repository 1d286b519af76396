"""Client-level DP-FedAvg on the server: clip (unless devices did), average, add noise.

The arithmetic lives in :mod:`common.privacy.client_level`; this module wires
it to the round loop: z calibrated once, at the start of the run, for the
planned rounds, and persisted in every checkpoint, so a resumed run keeps it
whatever its new ``num-server-rounds``; with ``client-sampling-rate`` q, the
devices of each round Poisson-sampled from the coordinator's secret random
source; the noised sum divided by the fixed denominator W (q times the census's
training devices; every round is released, even one no sampled device
answered, since skipping it would tell who took part); the server optimiser
applied to the noised mean (post-processing); the budget checked before each
round (raising Flower's ``PrivacyBudgetExhausted`` so the run stops with the
last completed round kept); one signed ``release`` entry per aggregate in the
server's ledger, each with its σ.

Under SecAgg+ with z > 0 the noise is the devices' (distributed Skellam,
:mod:`common.privacy.distributed_noise`): :meth:`ClientLevelDP.apply_secure`
adds nothing and accounts each release as the Skellam mechanism its
survivors' shares make, with z calibrated against that accountant.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp.exception import PrivacyBudgetExhausted

from common.privacy.budget import effective_budget
from common.privacy.client_level import (
    ACCOUNTANT_NAME,
    ClientLevelAccountant,
    add_sum_noise,
    calibrate_client_noise,
    clip_update,
    effective_rate,
    sampling_assumption,
)
from common.privacy.distributed_noise import (
    RELEASE_MECHANISM,
    SkellamAccountant,
    SkellamRelease,
    SkellamShare,
    calibrate_skellam_noise,
)
from common.run_config import RunConfig
from server.privacy_ledger import ServerLedger
from server.secagg_round import SECAGG_MIN_DEVICES, SecAggSettings
from server.server_optimizer import ServerOptimizer

log = logging.getLogger(__name__)


def shortfall_delta(cfg: RunConfig, population: int, q: float) -> float:
    """The δ one sampled SecAgg+ release pays for the chance its sample is too small.

    With fewer than :data:`SECAGG_MIN_DEVICES` sampled, SecAgg+ cannot run and
    the round releases nothing, where the accounted mechanism (a noised sum of
    whoever was sampled) always releases: the two differ only on that event,
    of probability p = P(Binomial(N, q) < 3) per round, so the run is
    (ε, δ + (1 + e^ε) p) per round for the ε it is accounted at (Kairouz et
    al.'s argument for dropped rounds). ε is bounded by the run's client-level
    target or budget; a run with neither, or one whose population makes the
    shortfall a noticeable share of δ, is refused by name.
    """
    bound = cfg.client_target_epsilon or cfg.client_epsilon_budget
    if bound <= 0:
        raise ValueError(
            "run config client-sampling-rate < 1 with secagg needs client-target-epsilon or "
            "client-epsilon-budget: the chance of a sample too small for SecAgg+ is paid "
            "in delta at that epsilon"
        )
    p = sum(
        math.comb(population, k) * q**k * (1 - q) ** (population - k)
        for k in range(min(SECAGG_MIN_DEVICES, population + 1))
    )
    per_release = (1.0 + math.exp(bound)) * p
    if per_release * cfg.num_server_rounds > cfg.delta / 10:
        raise ValueError(
            f"run config client-sampling-rate={q:g} with secagg over {population} training "
            f"devices: a round samples fewer than {SECAGG_MIN_DEVICES} with probability {p:.3g}, "
            f"which would cost {per_release * cfg.num_server_rounds:.3g} of delta={cfg.delta:g}; "
            "raise the rate or add devices"
        )
    return per_release


class ClientLevelDP:
    def __init__(
        self,
        cfg: RunConfig,
        population: int,
        ledger: ServerLedger,
        secagg: SecAggSettings | None = None,
        dimension: int = 0,
    ) -> None:
        self.clipping_norm = cfg.client_clipping_norm
        self.delta = cfg.delta
        self._secagg, self._dimension = secagg, dimension
        self.sampling_rate = cfg.client_sampling_rate
        self.q = effective_rate(cfg.client_sampling_rate)
        # The fixed denominator: the expected number of participants, q N.
        self.denominator = max(population, 1) * self.q
        self.optimizer = ServerOptimizer(
            cfg.server_optimizer, cfg.server_learning_rate, cfg.server_momentum
        )
        # Under SecAgg+ a round whose sample is too small for the protocol releases
        # nothing, which the accounted mechanism never does: that event's chance
        # comes off δ with every sampled release (see shortfall_delta).
        self.shortfall_delta = (
            shortfall_delta(cfg, population, self.q) if secagg is not None and self.q < 1 else 0.0
        )
        if cfg.client_target_epsilon > 0 and secagg is not None:
            self.noise_multiplier = calibrate_skellam_noise(
                cfg.client_target_epsilon,
                cfg.delta,
                cfg.num_server_rounds,
                lambda z: self._least_noisy_release(self._share_at(z)),
            )
        elif cfg.client_target_epsilon > 0:
            self.noise_multiplier = calibrate_client_noise(
                cfg.client_target_epsilon, cfg.delta, cfg.num_server_rounds, self.q
            )
        else:
            self.noise_multiplier = cfg.client_noise_multiplier
        self.budget = effective_budget(cfg.client_epsilon_budget, cfg.client_target_epsilon)
        self.accountant = (
            ClientLevelAccountant(self.noise_multiplier, cfg.delta, self.budget, self.q)
            if self.enabled and secagg is None
            else None
        )
        # Distributed noise: the devices add it; this accounts what they added.
        self.skellam = (
            SkellamAccountant(cfg.delta, self.budget) if self.enabled and secagg else None
        )
        self._ledger = ledger
        # The σ of every release so far: a resumed run replays exactly these.
        self.release_sigmas: list[float] = []
        # Central noise and the sample must be unpredictable, whatever the run seed.
        self._rng = np.random.default_rng(secrets.randbits(128))
        self._sampler = random.SystemRandom()

    @property
    def enabled(self) -> bool:
        return self.noise_multiplier > 0

    @property
    def sampled(self) -> bool:
        """Are the devices of each round Poisson-sampled (and the sample kept secret)?"""
        return self.enabled and self.q < 1

    def sample(self, nodes: Sequence[int]) -> list[int]:
        """This round's devices: each independently with probability q (all when q = 1)."""
        if not self.sampled:
            return list(nodes)
        return [n for n in nodes if self._sampler.random() < self.q]

    def _share_at(self, noise_multiplier: float) -> SkellamShare:
        assert self._secagg is not None
        share = self._secagg.noise_share(round(self.denominator), noise_multiplier, self._dimension)
        assert share is not None
        return share

    def check_budget(self, server_round: int) -> None:
        """Refuse to start a round whose release would exceed the client-level budget.

        Under distributed noise the round is assumed to be the least noisy one
        SecAgg+ could unmask (only ``threshold`` devices' shares).
        """
        if self.accountant is not None and self.accountant.would_exceed():
            spent = self.accountant.epsilon()
        elif self.skellam is not None:
            share = self._share_at(self.noise_multiplier)
            if not self.skellam.would_exceed(self._least_noisy_release(share)):
                return
            spent = self.skellam.epsilon()
        else:
            return
        raise PrivacyBudgetExhausted(
            f"round {server_round} would take client-level epsilon from "
            f"{spent:.3f} above the budget {self.budget:g} (delta={self.delta:g})"
        )

    def clip(self, current: ArrayRecord, replies: Sequence[ArrayRecord]) -> list[list[np.ndarray]]:
        """Server-side clipping of each device's update (plain aggregation)."""
        base = current.to_numpy_ndarrays()
        return [
            clip_update(
                [new - old for new, old in zip(r.to_numpy_ndarrays(), base, strict=True)],
                self.clipping_norm,
            )
            for r in replies
        ]

    def apply(
        self, current: ArrayRecord, summed: Sequence[np.ndarray] | None, n: int, server_round: int
    ) -> ArrayRecord:
        """New global weights: current + step((sum of the n clipped updates + noise) / W).

        W is the fixed denominator, never ``n``: the contributors' count is
        recorded in the ledger note for the operator, not used in the release.
        ``summed`` None (no device contributed) is released as noise alone.
        """
        if summed is None:
            summed = [np.zeros_like(a, dtype=np.float64) for a in current.to_numpy_ndarrays()]
        mean = add_sum_noise(
            summed, self.denominator, self.noise_multiplier, self.clipping_norm, self._rng
        )
        self._release(n, server_round)
        return self._step(current, mean)

    def apply_secure(
        self,
        current: ArrayRecord,
        summed: Sequence[np.ndarray],
        n: int,
        server_round: int,
        share: SkellamShare | None,
    ) -> ArrayRecord:
        """New global weights from a SecAgg+ sum: current + sum / W, no noise added here.

        With ``share`` the sum already carries the ``n`` survivors' Skellam
        shares; the release is accounted at exactly that noise.
        """
        if share is None or self.skellam is None:
            if self.enabled:
                raise RuntimeError(
                    "client-level noise under SecAgg+ must come from the devices; "
                    "the server never adds it to an unmasked sum"
                )
        elif self.sampled:
            # Who was sampled, and so how many shares are in the sum, is the
            # coordinator's secret: the release is the least noisy SecAgg+ unmasks.
            self._record_skellam(self._least_noisy_release(share), share, n, server_round)
        else:
            self._record_skellam(share.release(n), share, n, server_round)
        return self._step(current, [np.asarray(s, np.float64) / self.denominator for s in summed])

    def _least_noisy_release(self, share: SkellamShare) -> SkellamRelease:
        """The least noisy release SecAgg+ could unmask: the threshold's shares, at the
        device sampling rate, with a too-small sample's chance on δ (0 unsampled)."""
        release = share.release(share.threshold, self.q)
        return dataclasses.replace(release, truncation=release.truncation + self.shortfall_delta)

    def _record_skellam(
        self, release: SkellamRelease, share: SkellamShare, n: int, server_round: int
    ) -> None:
        assert self.skellam is not None
        epsilon = self.skellam.record_release(release)
        sigma = release.effective_noise_multiplier
        self._ledger_release(
            server_round,
            RELEASE_MECHANISM,
            sigma,
            epsilon,
            release.parameters(),
            f"{n} devices each added Skellam variance {share.variance:.6g} "
            f"(lattice scale {share.scale:g}, L2 {release.l2_sensitivity:.6g}, "
            f"L1 {release.l1_sensitivity:.6g}, truncation {release.truncation:.3g}); "
            f"denominator {self.denominator:g}; the server added no noise",
        )
        log.info("round %d: client-level epsilon %.3f (distributed noise)", server_round, epsilon)

    def _step(self, current: ArrayRecord, mean_update: Sequence[np.ndarray]) -> ArrayRecord:
        step = self.optimizer.step(mean_update)
        return ArrayRecord(
            {
                name: Array(np.asarray(old + delta, dtype=old.dtype))
                for name, old, delta in zip(
                    current.keys(), current.to_numpy_ndarrays(), step, strict=True
                )
            }
        )

    def _release(self, n: int, server_round: int) -> None:
        if self.accountant is None:
            return
        epsilon = self.accountant.record_release(self.noise_multiplier)
        self._ledger_release(
            server_round,
            "dp-fedavg",
            self.noise_multiplier,
            epsilon,
            ACCOUNTANT_NAME,
            f"{n} devices contributed; denominator {self.denominator:g}",
        )
        log.info("round %d: client-level epsilon %.3f", server_round, epsilon)

    def _ledger_release(
        self,
        server_round: int,
        mechanism: str,
        sigma: float,
        epsilon: float,
        accountant: str,
        note: str,
    ) -> None:
        """One signed ``release`` entry, and its σ kept for a resume."""
        self.release_sigmas.append(sigma)
        self._ledger.chain.append(
            round=server_round,
            device_id="server",
            event="release",
            mechanism=mechanism,
            sigma=sigma,
            q=self.q,  # 1: no amplification claimed (see sampling_assumption)
            steps=1,
            delta=self.delta,
            epsilon=epsilon,
            budget=self.budget,
            accountant=accountant,
            note=note,
        )

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint needs to resume this accountant: z, W and every release's σ."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "denominator": self.denominator,
            "release_sigmas": list(self.release_sigmas),
            "server_optimizer": self.optimizer.state_dict(),
            "skellam_releases": [
                [r.variance, r.l2_sensitivity, r.l1_sensitivity, r.truncation, r.q]
                for r in (self.skellam.history if self.skellam else [])
            ],
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Resume: keep the checkpoint's z and W, and replay each release at its own σ.

        A resumed run may plan another number of rounds; recalibrating z for it
        would change the noise of the releases still to come relative to what
        the budget check assumed, so z is kept as it was chosen at the start.
        """
        sigmas = state.get("release_sigmas", [])
        if not isinstance(sigmas, Iterable):
            raise TypeError(f"release_sigmas must be a list, not {type(sigmas).__name__}")
        z = state.get("noise_multiplier", self.noise_multiplier)
        self.noise_multiplier = float(z)  # type: ignore[arg-type]
        self.denominator = float(state.get("denominator", self.denominator))  # type: ignore[arg-type]
        self.release_sigmas = []
        optimizer_state = state.get("server_optimizer")
        if isinstance(optimizer_state, Mapping):
            self.optimizer.load_state_dict(optimizer_state)
        if self._secagg is None and (self.accountant is not None or self.enabled):
            self.accountant = ClientLevelAccountant(
                self.noise_multiplier, self.delta, self.budget, self.q
            )
        for sigma in sigmas:
            if self.accountant is not None:
                self.accountant.record_release(float(sigma))
            self.release_sigmas.append(float(sigma))
        if self._secagg is not None and self.enabled:
            self.skellam = SkellamAccountant(self.delta, self.budget)
            for values in state.get("skellam_releases", []):  # type: ignore[attr-defined]
                self.skellam.record_release(SkellamRelease(*map(float, values)))

    def as_dict(self) -> dict[str, object]:
        counted = self.skellam or self.accountant
        return {
            "unit": "client-level (one device's whole participation)",
            "enabled": self.enabled,
            "noise": (
                "distributed Skellam, added by the devices before SecAgg+ masking; "
                "the server adds none"
                if self.skellam is not None
                else "Gaussian, added by the server to the sum it aggregates"
            ),
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            "delta": self.delta,
            "budget": self.budget,
            "releases": counted.releases if counted else 0,
            "epsilon": counted.epsilon() if counted else None,
            "accountant": (
                "skellam-rdp (Agarwal et al. 2021, Thm 3.5; dp-accounting RDP conversion)"
                if self.skellam is not None
                else ACCOUNTANT_NAME
            ),
            "sampling": sampling_assumption(self.sampling_rate if self.enabled else 0.0),
            "sampling_rate": self.q,
            "server_optimizer": {
                "name": self.optimizer.name,
                "learning_rate": self.optimizer.learning_rate,
                "momentum": self.optimizer.momentum,
            },
        }
