"""User-level DP-SGD: one whole subject moves the clipped sum by at most C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dp_accounting import dp_event, rdp
from opacus import GradSampleModule

from client.dp_training import DPSettings
from client.subject_dp_sgd import clipped_subject_sum, subject_plan, train_subject_level
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.models.losses import training_loss
from common.privacy.person_level import person_level

C = 1.0


def _per_clip_grads(model, x, y):
    wrapped = GradSampleModule(model, loss_reduction="mean")
    loss, _ = training_loss(wrapped, x, y)
    loss.backward()
    grads = [p.grad_sample.detach().clone() for p in wrapped.parameters()]
    wrapped._close()
    return grads


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _clipped_sum(model, x, y, subject_of_clip):
    index = torch.as_tensor(subject_of_clip, dtype=torch.long)
    return _flat(clipped_subject_sum(_per_clip_grads(model, x, y), index, C))


@pytest.mark.parametrize("clips_of_removed", [1, 40])
def test_removing_one_whole_subject_moves_the_clipped_sum_by_at_most_C(clips_of_removed):
    torch.manual_seed(0)
    model = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES))
    others = [3, 7, 12]  # clips of the other subjects
    sizes = [*others, clips_of_removed]
    n = sum(sizes)
    # Large inputs so that every subject's summed gradient is far above C.
    x = torch.randn(n, 3, 28, 28) * 5
    y = torch.randint(0, 3, (n,))
    subject_of_clip = np.repeat(np.arange(len(sizes)), sizes)
    with_subject = _clipped_sum(model, x, y, subject_of_clip)
    keep = subject_of_clip < len(others)
    without = _clipped_sum(model, x[keep], y[keep], subject_of_clip[keep])
    change = float((with_subject - without).norm())
    assert change <= C + 1e-5
    # The subject's clips together reach the bound: it is the subject that is clipped.
    assert change > 0.5 * C


def test_a_subject_is_clipped_as_a_whole_not_clip_by_clip():
    torch.manual_seed(1)
    model = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES))
    x, y = torch.randn(40, 3, 28, 28) * 5, torch.randint(0, 3, (40,))
    one_subject = _clipped_sum(model, x, y, np.zeros(40, dtype=int))
    assert float(one_subject.norm()) <= C + 1e-5
    # Clip-level clipping of the same 40 clips would let them move it by up to 40 C.
    per_clip = _clipped_sum(model, x, y, np.arange(40))
    assert float(per_clip.norm()) > 3 * C


def _data(subjects, clips_each, seed=0):
    rng = np.random.default_rng(seed)
    n = subjects * clips_each
    features = rng.normal(size=(n, 3, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 3, size=n)
    names = [f"S{i:02d}" for i in range(subjects) for _ in range(clips_each)]
    return features, labels, names


def test_round_history_and_epsilon_match_an_independent_accountant():
    features, labels, names = _data(subjects=12, clips_each=5)
    plan = subject_plan(num_subjects=12, batch_subjects=4, local_epochs=2, rounds=3)
    assert (plan.sample_rate, plan.steps_per_round) == (pytest.approx(1 / 3), 6)
    model = build_model("ststnet", num_classes=3)
    dp = DPSettings(noise_multiplier=1.3, max_grad_norm=C, delta=1e-5)
    history: list = []
    for _ in range(3):
        result = train_subject_level(
            model, features, labels, names, plan=plan, learning_rate=0.1, dp=dp, history=history
        )
        history = result.history
    assert history == [(1.3, pytest.approx(1 / 3), 18)]  # one merged segment, never one per round
    accountant = rdp.RdpAccountant()
    event = dp_event.PoissonSampledDpEvent(1 / 3, dp_event.GaussianDpEvent(1.3))
    accountant.compose(event, 18)
    independent = accountant.get_epsilon(1e-5)
    assert result.epsilon == pytest.approx(independent, rel=2e-2)


def test_the_noise_is_there_and_scaled_to_C_sigma():
    """A broken mechanism (no noise) must look different: updates vary run to run."""
    features, labels, names = _data(subjects=4, clips_each=3)
    plan = subject_plan(num_subjects=4, batch_subjects=4, local_epochs=1, rounds=1)
    dp = DPSettings(noise_multiplier=2.0, max_grad_norm=C, delta=1e-5)
    updates = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("ststnet", num_classes=3)
        before = _flat([p.detach().clone() for p in model.parameters()])
        train_subject_level(
            model,
            features,
            labels,
            names,
            plan=plan,
            learning_rate=1.0,
            dp=dp,
            history=[],
            seed=7,
        )
        updates.append(_flat([p.detach() for p in model.parameters()]) - before)
    # Same seed for sampling, secret noise: the difference is noise of std
    # sqrt(2) * sigma * C / expected subjects (4) per coordinate.
    spread = float((updates[0] - updates[1]).std())
    assert spread == pytest.approx(np.sqrt(2) * 2.0 * C / 4, rel=0.15)


def test_person_level_epsilon_is_finite_only_when_every_spend_protects_a_subject():
    entry = {"event": "train", "steps": 10, "sigma": 1.0, "q": 0.25, "mechanism": "dp-sgd-subject"}
    release = {**entry, "event": "release", "steps": 1, "q": 1.0, "mechanism": "gaussian-counts"}
    assert np.isfinite(person_level([entry], 1e-5).epsilon)
    mixed = person_level([entry, release], 1e-5)
    assert mixed.epsilon == float("inf") and mixed.unit == "clip"


def test_a_device_that_protects_subjects_refuses_clip_level_mechanisms():
    from client.privacy_policy import Refusal, mechanism_terms
    from common.node_config import NodeConfig
    from common.privacy.dp_plan import DPPlan
    from common.run_config import RunConfig

    node = NodeConfig(data_dir="/d", epsilon_budget=8.0, privacy_unit="subject")
    plan = DPPlan(sample_rate=0.25, steps_per_round=8, planned_rounds=6)
    cfg = RunConfig(dp_unit="clip")
    refused = mechanism_terms(node, cfg, "dp-sgd", plan, None, 1.0)
    assert isinstance(refused, Refusal) and refused.code == "unit-below-policy"
    assert "dp-sgd" in refused.detail
    accepted = mechanism_terms(node, RunConfig(), "dp-sgd-subject", plan, None, 1.0)
    assert not isinstance(accepted, Refusal) and accepted.sigma > 0.5


def test_a_run_config_with_an_unknown_dp_unit_is_refused_by_name():
    from common.run_config import RunConfig

    with pytest.raises(ValueError, match="dp-unit='person'"):
        RunConfig(dp_unit="person")
