"""Empirical privacy audit in one training run (Steinke, Nasr & Jagielski, 2023).

``m`` canaries are made; each is inserted into the device's training data
independently with probability 1/2. After one training run the auditor scores
every canary (how much training lowered its loss, knowing the initial and the
final model: a white-box membership-inference test), guesses "in" for the
``k`` highest scores and "out" for the ``k`` lowest, and abstains on the rest.
If training is (epsilon, delta)-DP, the number of correct guesses is
stochastically dominated by a binomial with success probability
e^epsilon / (1 + e^epsilon) (plus a delta term), so a high count yields a
lower bound on epsilon at a chosen confidence. The bound must stay below the
claimed epsilon; a non-private baseline shows the test has power.

The canaries are "spatial Dirac" inputs: a bright 3x3 patch in one input
channel at one of the 5x5 cells that STSTNet's pooling keeps apart, with a
random label. Each canary therefore reaches the classifier through its own
features, so it can only be memorized, not learned from the others (random
noise inputs all look alike after pooling and give a powerless test). The
real data are synthetic features of the model's input shape: the audit
measures the training mechanism (Opacus DP-SGD with fedmer's settings) on CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from client.dp_training import DPSettings, train_with_dp
from common.models import build_model
from common.privacy.accounting import epsilon_rdp
from common.privacy.dp_plan import DPPlan
from common.privacy.empirical_audit import auc, epsilon_lower_bound, guess_membership, tpr_at_fpr

INPUT_SHAPE = (3, 28, 28)
NUM_CLASSES = 3


@dataclass(frozen=True)
class EmpiricalAuditConfig:
    target_epsilon: float = 8.0  # 0 = the non-private baseline (no noise, no clipping)
    delta: float = 1e-5
    real_examples: int = 30
    guesses: int = 10  # k "in" guesses and k "out" guesses
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 0.5
    max_grad_norm: float = 1.0
    canary_amplitude: float = 5.0
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class EmpiricalAuditResult:
    claimed_epsilon: float
    epsilon_lower_bound: float
    auc: float
    tpr_at_fpr_1e3: float
    correctguess_membershipes: int
    guesses: int
    canaries: int
    canaries_in: int
    noise_multiplier: float
    confidence: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_empirical_audit(cfg: EmpiricalAuditConfig) -> EmpiricalAuditResult:
    rng = np.random.default_rng(cfg.seed)
    real_x, real_y = _real_examples(rng, cfg.real_examples)
    canary_x = dirac_canaries(cfg.canary_amplitude)
    canary_y = rng.integers(0, NUM_CLASSES, len(canary_x))
    included = rng.random(len(canary_x)) < 0.5
    x = np.concatenate([real_x, canary_x[included]])
    y = np.concatenate([real_y, canary_y[included]])

    torch.manual_seed(cfg.seed)
    model = build_model("ststnet", num_classes=NUM_CLASSES)
    initial_loss = _losses(model, canary_x, canary_y)
    private = cfg.target_epsilon > 0
    plan = DPPlan.for_device(len(x), cfg.batch_size, cfg.epochs, rounds=1)
    sigma = plan.noise_for(cfg.target_epsilon, cfg.delta) if private else 0.0
    # The baseline is plain SGD: no noise, and a clipping norm no gradient reaches.
    clip = cfg.max_grad_norm if private else 1e6
    result = train_with_dp(
        model,
        x,
        y,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        dp=DPSettings(sigma, clip, cfg.delta),
        history=[],
        seed=cfg.seed,
    )
    scores = initial_loss - _losses(model, canary_x, canary_y)
    correct, made = guess_membership(scores, included, cfg.guesses)
    return EmpiricalAuditResult(
        claimed_epsilon=epsilon_rdp(result.history, cfg.delta),
        epsilon_lower_bound=epsilon_lower_bound(
            len(canary_x), made, correct, cfg.delta, cfg.confidence
        ),
        auc=auc(scores[included], scores[~included]),
        tpr_at_fpr_1e3=tpr_at_fpr(scores[included], scores[~included], 1e-3),
        correctguess_membershipes=correct,
        guesses=made,
        canaries=len(canary_x),
        canaries_in=int(included.sum()),
        noise_multiplier=sigma,
        confidence=cfg.confidence,
    )


def dirac_canaries(amplitude: float, cells: int = 5, patch: int = 3) -> np.ndarray:
    """One canary per (input channel, pooling cell): 3 x 5 x 5 = 75 for STSTNet."""
    channels, height, width = INPUT_SHAPE
    step = height // cells + 1  # 6: the cells of a 28-pixel side pooled to 5
    canaries = []
    for channel in range(channels):
        for row in range(cells):
            for col in range(cells):
                x = np.zeros(INPUT_SHAPE, dtype=np.float32)
                top, left = row * step + 1, col * step + 1
                x[channel, top : top + patch, left : left + patch] = amplitude
                canaries.append(x)
    return np.stack(canaries)


def _real_examples(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable stand-ins for flow/strain features: a class-dependent mean plus noise."""
    prototypes = rng.normal(0.0, 1.0, size=(NUM_CLASSES, *INPUT_SHAPE))
    labels = rng.integers(0, NUM_CLASSES, n)
    features = prototypes[labels] + rng.normal(0.0, 1.0, size=(n, *INPUT_SHAPE))
    return features.astype(np.float32), labels


@torch.no_grad()
def _losses(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    was_training = model.training
    model.eval()  # dropout off while scoring
    logits = model(torch.as_tensor(x))
    model.train(was_training)
    return nn.functional.cross_entropy(logits, torch.as_tensor(y), reduction="none").numpy()
