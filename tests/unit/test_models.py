"""Model zoo: parameter counts, Opacus compatibility, one DP-SGD step each."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator

from client.dp_training import DPSettings, train_with_dp
from common.models import available_models, build_model, count_parameters, input_shape_of
from common.models.losses import training_loss
from common.models.msr3d import MSR3D

# Tiny inputs keep the 3D models fast; global pooling makes them accept any size.
TINY_SHAPES = {
    "ststnet": (3, 28, 28),
    "off_apexnet": (3, 28, 28),
    "c3d_light": (3, 4, 8, 8),
    "msr3d": (3, 4, 8, 8),
}


def test_registry_lists_every_model() -> None:
    assert available_models() == ["c3d_light", "msr3d", "off_apexnet", "ststnet"]
    assert input_shape_of("STSTNet") == (3, 28, 28)
    assert input_shape_of("msr3d") == (3, 16, 28, 28)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("ststnet", 1_600, 1_700), ("off_apexnet", 2_500_000, 2_800_000)],
)
def test_parameter_counts_match_the_papers(name: str, low: int, high: int) -> None:
    assert low <= count_parameters(build_model(name)) <= high


def test_parameter_counts_are_exact() -> None:
    counts = {name: count_parameters(build_model(name)) for name in available_models()}
    assert counts == {
        "ststnet": 1_683,
        "off_apexnet": 2_664_563,
        "c3d_light": 70_947,
        "msr3d": 1_990_064,
    }


@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_opacus_validator_accepts_model(name: str) -> None:
    model = build_model(name)
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_one_dp_sgd_step_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    before = [p.detach().clone() for p in model.parameters()]
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, *TINY_SHAPES[name])).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    result = train_with_dp(
        model,
        features,
        labels,
        epochs=1,
        batch_size=4,
        learning_rate=0.1,
        dp=DPSettings(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5),
        history=[],
        seed=0,
    )
    assert result.steps == 1
    assert result.epsilon > 0
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    # Noise is added to every coordinate, so every parameter moves.
    assert all(changed)


def test_msr3d_four_heads_each_produce_logits_and_get_gradient() -> None:
    torch.manual_seed(0)
    plain = MSR3D(num_classes=3)
    x = torch.randn(3, 3, 4, 8, 8)
    y = torch.tensor([0, 1, 2])
    with torch.no_grad():
        heads = plain.forward_heads(x)
    # Wrapped after the inspection pass: Opacus expects one forward per backward.
    model = GradSampleModule(plain)
    assert len(heads) == MSR3D.num_heads == 4
    assert all(h.shape == (3, 3) and torch.isfinite(h).all() for h in heads)
    loss, logits = training_loss(model, x, y)
    assert torch.allclose(logits, torch.stack(heads).mean(0), atol=1e-6)
    # Summed CE: the loss is exactly the sum of the four heads' losses.
    expected = sum(torch.nn.functional.cross_entropy(h, y) for h in heads)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss.backward()
    for head in model._module.heads:
        assert head.weight.grad_sample.shape == (3, *head.weight.shape)
        assert head.weight.grad_sample.abs().sum() > 0
    # The learned multi-scale fusion weights get per-sample gradients too.
    for module in model._module.multiscale:
        assert module.fusion.logits.grad_sample.shape == (3, 3)
        assert module.fusion.logits.grad_sample.abs().sum() > 0


def test_models_declare_their_input_shape() -> None:
    for name in available_models():
        model = build_model(name)
        out = model(torch.zeros(2, *model.input_shape))
        assert out.shape == (2, 3)
