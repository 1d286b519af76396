"""Client-level DP-FedAvg on the server: clip (unless devices did), average, add noise.

The arithmetic lives in :mod:`common.privacy.client_level`; this module wires
it to the round loop: z calibrated once, at the start of the run, for the
planned rounds, and persisted in every checkpoint, so a resumed run keeps it
whatever its new ``num-server-rounds``; the noised sum divided by the fixed
denominator W (the census's training devices); the budget checked before each
round (raising Flower's ``PrivacyBudgetExhausted`` so the run stops with the
last completed round kept); one signed ``release`` entry per aggregate in the
server's ledger, each with its σ.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp.exception import PrivacyBudgetExhausted

from common.privacy.budget import effective_budget
from common.privacy.client_level import (
    ACCOUNTANT_NAME,
    SAMPLING_ASSUMPTION,
    ClientLevelAccountant,
    add_sum_noise,
    calibrate_client_noise,
    clip_update,
)
from common.run_config import RunConfig
from server.privacy_ledger import ServerLedger

log = logging.getLogger(__name__)


class ClientLevelDP:
    def __init__(self, cfg: RunConfig, population: int, ledger: ServerLedger) -> None:
        self.clipping_norm = cfg.client_clipping_norm
        self.delta = cfg.delta
        if cfg.client_target_epsilon > 0:
            self.noise_multiplier = calibrate_client_noise(
                cfg.client_target_epsilon, cfg.delta, cfg.num_server_rounds
            )
        else:
            self.noise_multiplier = cfg.client_noise_multiplier
        self.budget = effective_budget(cfg.client_epsilon_budget, cfg.client_target_epsilon)
        self.accountant = (
            ClientLevelAccountant(self.noise_multiplier, cfg.delta, population, self.budget)
            if self.enabled
            else None
        )
        self._ledger = ledger
        # The fixed denominator: the expected number of participants.
        self.denominator = max(population, 1)
        # The σ of every release so far: a resumed run replays exactly these.
        self.release_sigmas: list[float] = []
        # Central noise must be unpredictable, whatever the run seed.
        self._rng = np.random.default_rng(secrets.randbits(128))

    @property
    def enabled(self) -> bool:
        return self.noise_multiplier > 0

    def check_budget(self, server_round: int) -> None:
        """Refuse to start a round whose release would exceed the client-level budget."""
        if self.accountant is not None and self.accountant.would_exceed():
            raise PrivacyBudgetExhausted(
                f"round {server_round} would take client-level epsilon from "
                f"{self.accountant.epsilon():.3f} above the budget {self.budget:g} "
                f"(delta={self.delta:g})"
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
        self, current: ArrayRecord, summed: Sequence[np.ndarray], n: int, server_round: int
    ) -> ArrayRecord:
        """New global weights: current + (sum of the n clipped updates + noise) / W.

        W is the fixed denominator, never ``n``: the contributors' count is
        recorded in the ledger note for the operator, not used in the release.
        """
        mean = add_sum_noise(
            summed, self.denominator, self.noise_multiplier, self.clipping_norm, self._rng
        )
        self._release(n, server_round)
        return ArrayRecord(
            {
                name: Array(np.asarray(old + step, dtype=old.dtype))
                for name, old, step in zip(
                    current.keys(), current.to_numpy_ndarrays(), mean, strict=True
                )
            }
        )

    def _release(self, n: int, server_round: int) -> None:
        if self.accountant is None:
            return
        epsilon = self.accountant.record_release(self.noise_multiplier)
        self.release_sigmas.append(self.noise_multiplier)
        self._ledger.chain.append(
            round=server_round,
            device_id="server",
            event="release",
            mechanism="dp-fedavg",
            sigma=self.noise_multiplier,
            q=1.0,  # no amplification: see SAMPLING_ASSUMPTION
            steps=1,
            delta=self.delta,
            epsilon=epsilon,
            budget=self.budget,
            accountant=ACCOUNTANT_NAME,
            note=f"{n} devices contributed; denominator {self.denominator}",
        )
        log.info("round %d: client-level epsilon %.3f", server_round, epsilon)

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint needs to resume this accountant: z, W and every release's σ."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "denominator": self.denominator,
            "release_sigmas": list(self.release_sigmas),
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
        self.denominator = int(state.get("denominator", self.denominator))  # type: ignore[call-overload]
        if self.accountant is not None or self.enabled:
            self.accountant = ClientLevelAccountant(
                self.noise_multiplier, self.delta, self.denominator, self.budget
            )
        for sigma in sigmas:
            if self.accountant is not None:
                self.accountant.record_release(float(sigma))
            self.release_sigmas.append(float(sigma))

    def as_dict(self) -> dict[str, object]:
        return {
            "unit": "client-level (one device's whole participation)",
            "enabled": self.enabled,
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self.clipping_norm,
            "delta": self.delta,
            "budget": self.budget,
            "releases": self.accountant.releases if self.accountant else 0,
            "epsilon": self.accountant.epsilon() if self.accountant else None,
            "accountant": ACCOUNTANT_NAME,
            "sampling": SAMPLING_ASSUMPTION,
        }
