import numpy as np
import torch
from opacus.validators import ModuleValidator

from client.dp_training import DPSettings, train_with_dp
from common.models import available_models, build_model, count_parameters


def test_ststnet_parameter_count_matches_the_paper():
    assert 1600 <= count_parameters(build_model("ststnet")) <= 1700


def test_ststnet_is_accepted_by_opacus_validator():
    assert ModuleValidator.validate(build_model("ststnet"), strict=False) == []


def test_ststnet_output_shape():
    logits = build_model("ststnet", num_classes=3)(torch.zeros(4, 3, 28, 28))
    assert logits.shape == (4, 3)


def test_unknown_model_name_lists_the_choices():
    try:
        build_model("resnet9000")
    except ValueError as err:
        assert "resnet9000" in str(err) and "ststnet" in str(err)
    else:
        raise AssertionError("expected ValueError")
    assert "ststnet" in available_models()


def test_one_dp_sgd_round_changes_the_weights_and_accounts_for_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3, 28, 28)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = build_model("ststnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_with_dp(
        model,
        x,
        y,
        epochs=1,
        batch_size=4,
        learning_rate=0.1,
        dp=DPSettings(1.0, 1.0, 1e-5),
        history=[],
        seed=0,
    )
    assert result.steps == 4 and result.sample_rate == 0.25
    assert result.history == [(1.0, 0.25, 4)]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 0 < result.epsilon < 100
