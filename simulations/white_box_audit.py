"""Empirical audit of the deployed DP-SGD mechanism, in the coordinator's view.

What is audited is what a run's ledger says a device did: its σ, its
sampling rate q, its steps per round and its rounds, at its δ. The coordinator
sees every round's model, so the audit is white-box over every round, with
**gradient canaries** as Steinke, Nasr & Jagielski (2023) use them: ``m``
canaries, each included in the device's data with probability 1/2. Each
canary's gradient is a Dirac vector (it moves only its own coordinate of a
linear probe), so after training the change of that coordinate, summed over
the rounds the coordinator saw, is the optimal test statistic for "was this
canary in?". The training itself is fedmer's own
:func:`client.dp_training.train_with_dp`, Opacus DP-SGD with Poisson sampling at
the recorded q and noise at the recorded σ, run round after round.

Two lower bounds on ε come out of the canaries' scores:

* **one-run, assumption-free** (Steinke et al., Theorem 5.2): guesses on the
  top and bottom scores; the most it can ever certify with ``m`` canaries at
  δ (its *ceiling*) is stated with it;
* **Gaussian-DP fit** (as in Nasr et al., 2023): the separation μ of the in-
  and out-scores, its one-sided lower confidence bound by bootstrap, and the ε
  at δ of a μ-GDP mechanism. Post-processing means the mechanism is no more
  private than its canaries' scores are separable. This assumes the scores are
  Gaussian, which sums of per-step Gaussian noise are.

The audit fails when the lower bound exceeds the ε the ledger claims.
``applied_noise_fraction`` < 1 is the deliberately broken device this audit
must catch: it records σ and applies only that fraction of it (test and
experiment scaffolding; nothing in the product can do this).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from client.dp_training import DPSettings, train_with_dp
from common.privacy.accounting import epsilon_rdp
from common.privacy.empirical_audit import (
    epsilon_lower_bound,
    gdp_epsilon,
    gdp_mu_lower_bound,
    guess_membership,
)

# Both are the sampled Gaussian mechanism; user-level DP-SGD samples and clips
# subjects where DP-SGD samples and clips clips, so a canary stands for either.
DP_SGD_MECHANISMS = ("dp-sgd", "dp-sgd-subject")


@dataclass(frozen=True)
class DeployedSetting:
    """The mechanism a device's chain records: what the audit reproduces."""

    sigma: float
    sample_rate: float
    steps_per_round: int
    rounds: int
    delta: float
    claimed_epsilon: float
    device_id: str = ""

    @classmethod
    def from_entries(cls, entries: Sequence[Mapping[str, Any]]) -> DeployedSetting:
        """The setting of a device's DP-SGD train entries (one σ and q, as fedmer pins them)."""
        trained = [
            e for e in entries if e["event"] == "train" and e["mechanism"] in DP_SGD_MECHANISMS
        ]
        if not trained:
            raise ValueError("the chain has no DP-SGD training entry to audit")
        settings = {(float(e["sigma"]), float(e["q"]), int(e["steps"])) for e in trained}
        if len(settings) != 1:
            raise ValueError(f"the chain mixes settings {sorted(settings)}; audit one at a time")
        [(sigma, q, steps)] = settings
        return cls(
            sigma=sigma,
            sample_rate=q,
            steps_per_round=steps,
            rounds=len(trained),
            delta=float(trained[-1]["delta"]),
            claimed_epsilon=float(trained[-1]["epsilon"]),
            device_id=str(trained[-1]["device_id"]),
        )


@dataclass(frozen=True)
class WhiteBoxAuditConfig:
    canaries: int = 4000
    guesses: int = 1000  # k "in" and k "out" guesses for the one-run bound
    confidence: float = 0.95
    max_grad_norm: float = 1.0
    canary_scale: float = 100.0  # input scale: every canary's gradient is clipped
    learning_rate: float = 0.01  # small: the probe stays where gradients are saturated
    bootstrap: int = 400
    applied_noise_fraction: float = 1.0  # < 1: the broken mechanism (scaffolding)
    seed: int = 0


@dataclass(frozen=True)
class WhiteBoxAuditResult:
    setting: DeployedSetting
    config: WhiteBoxAuditConfig
    applied_sigma: float
    recomputed_epsilon: float  # RDP for the recorded setting (what the ledger should claim)
    mu_estimate: float
    mu_lower: float
    gdp_epsilon_lower_bound: float
    one_run_epsilon_lower_bound: float
    one_run_ceiling: float  # the most the one-run bound can certify with these canaries
    correct_guesses: int
    guesses: int

    @property
    def epsilon_lower_bound(self) -> float:
        return max(self.gdp_epsilon_lower_bound, self.one_run_epsilon_lower_bound)

    @property
    def refutes_claim(self) -> bool:
        return self.epsilon_lower_bound > self.setting.claimed_epsilon

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("setting", "config")},
            "setting": asdict(self.setting),
            "config": asdict(self.config),
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "refutes_claim": self.refutes_claim,
        }


def _probe(m: int) -> nn.Module:
    probe = nn.Linear(m, 2, bias=False)
    nn.init.zeros_(probe.weight)
    return probe


def run_white_box_audit(
    setting: DeployedSetting, config: WhiteBoxAuditConfig = WhiteBoxAuditConfig()
) -> WhiteBoxAuditResult:
    m = config.canaries
    rng = np.random.default_rng(config.seed)
    included = rng.random(m) < 0.5
    # Example i is canary i (a Dirac input on coordinate i) when included, else a
    # zero input, whose gradient is zero: the dataset size, hence q, is fixed.
    features = np.zeros((m, m), np.float32)
    features[np.arange(m), np.arange(m)] = config.canary_scale * included
    labels = np.zeros(m, np.int64)
    batch_size = max(1, round(setting.sample_rate * m))
    epochs = max(1, round(setting.steps_per_round * batch_size / m))
    applied = setting.sigma * config.applied_noise_fraction
    probe = _probe(m)
    history: list[tuple[float, float, int]] = []
    scores = np.zeros(m)
    for _ in range(setting.rounds):
        before = probe.weight.detach().clone()
        result = train_with_dp(
            probe,
            features,
            labels,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=config.learning_rate,
            dp=DPSettings(applied, config.max_grad_norm, setting.delta),
            history=history,
        )
        history = [tuple(s) for s in result.history]  # type: ignore[misc]
        # What the coordinator sees: this round's update. A canary pushes the
        # logit of its label (0) up and the other down, on its own coordinate.
        change = (probe.weight.detach() - before).numpy()
        scores += change[0] - change[1]
    in_scores, out_scores = scores[included], scores[~included]
    mu, mu_lower = gdp_mu_lower_bound(
        in_scores, out_scores, config.confidence, config.bootstrap, rng
    )
    correct, guesses = guess_membership(scores, included, config.guesses)
    recorded = [(setting.sigma, setting.sample_rate, setting.steps_per_round * setting.rounds)]
    return WhiteBoxAuditResult(
        setting=setting,
        config=config,
        applied_sigma=applied,
        recomputed_epsilon=epsilon_rdp(recorded, setting.delta),
        mu_estimate=mu,
        mu_lower=mu_lower,
        gdp_epsilon_lower_bound=gdp_epsilon(mu_lower, setting.delta),
        one_run_epsilon_lower_bound=epsilon_lower_bound(
            m, guesses, correct, setting.delta, config.confidence
        ),
        one_run_ceiling=epsilon_lower_bound(m, guesses, guesses, setting.delta, config.confidence),
        correct_guesses=correct,
        guesses=guesses,
    )


def describe(result: WhiteBoxAuditResult, label: str) -> str:
    s = result.setting
    verdict = "REFUTES the claim" if result.refutes_claim else "consistent with the claim"
    return (
        f"{label}: device {s.device_id or '?'}, σ={s.sigma:.4g} recorded "
        f"(applied {result.applied_sigma:.4g}), q={s.sample_rate:.4g}, "
        f"{s.steps_per_round} steps × {s.rounds} rounds, δ={s.delta:g}; claimed ε={s.claimed_epsilon:.3f}\n"
        f"  canary separation μ={result.mu_estimate:.3f} (≥{result.mu_lower:.3f} at "
        f"{result.config.confidence:.0%}) → Gaussian-DP lower bound ε≥{result.gdp_epsilon_lower_bound:.3f}\n"
        f"  one-run bound ε≥{result.one_run_epsilon_lower_bound:.3f} ({result.correct_guesses}/"
        f"{result.guesses} guesses correct; ceiling {result.one_run_ceiling:.3f} with "
        f"{result.config.canaries} canaries)\n"
        f"  → {verdict}"
    )  # fmt: skip


__all__ = ["DeployedSetting", "WhiteBoxAuditConfig", "describe", "run_white_box_audit"]
