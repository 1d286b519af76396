"""Every per-unit gradient method gives Opacus' hooks-mode gradients, and the true ones."""

import pytest
import torch
from torch.nn import functional as F

from client.per_sample_grads import DEFAULT_MODE, MODES, UnitGradients
from common.models import build_model, input_shape_of


def _batch(model_name: str, n: int, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *input_shape_of(model_name)), generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=gen)
    return x, y


def _per_unit(model, x, y, unit, mode):
    per_unit = UnitGradients(model, mode)
    try:
        return per_unit(x, y, unit)
    finally:
        per_unit.close()


@pytest.mark.parametrize("mode", [m for m in MODES if m != "hooks"])
@pytest.mark.parametrize("clips_per_unit", [1, 3])
def test_every_mode_equals_hooks_to_1e_6(mode, clips_per_unit):
    """Per clip (clip-level DP-SGD) and per subject of 3 clips (user-level).

    Per clip in float32, as trained. Units of 3 in float64: a unit's sum of
    float32 gradients depends on the order of the additions (up to about 4e-6
    here), which is rounding, not a difference of method.
    """
    torch.manual_seed(1)
    dtype = torch.float32 if clips_per_unit == 1 else torch.float64
    model = build_model("ststnet").to(dtype)
    x, y = _batch("ststnet", 9, dtype=dtype)
    unit = torch.arange(9) // clips_per_unit
    loss_h, logits_h, ref = _per_unit(model, x, y, unit, "hooks")
    loss, logits, grads = _per_unit(model, x, y, unit, mode)
    assert len(grads) == len(ref) == len(list(model.parameters()))
    for g, r, p in zip(grads, ref, model.parameters(), strict=True):
        assert g.shape == (9 // clips_per_unit, *p.shape)
        # 1e-6 relative to the gradient's size (float32 rounding of large entries).
        scale = max(1.0, float(r.abs().max()))
        assert float((g - r).abs().max()) <= 1e-6 * scale, (mode, float((g - r).abs().max()))
    assert float(loss) == pytest.approx(float(loss_h), abs=1e-6)
    assert torch.allclose(logits, logits_h, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_the_gradients_are_each_units_own(mode):
    """Against plain autograd on one unit's clips at a time, in float64."""
    torch.manual_seed(2)
    model = build_model("ststnet").double()
    x, y = _batch("ststnet", 6, seed=3, dtype=torch.float64)
    unit = torch.tensor([0, 1, 1, 2, 2, 2])
    _, _, grads = _per_unit(model, x, y, unit, mode)
    for u in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[unit == u]), y[unit == u], reduction="sum").backward()
        for g, p in zip(grads, model.parameters(), strict=True):
            assert torch.allclose(g[u], p.grad, atol=1e-10), mode


def test_a_multi_head_model_sums_its_heads_in_the_modes_that_can_take_it():
    torch.manual_seed(4)
    model = build_model("msr3d")
    x, y = _batch("msr3d", 2, seed=5)
    unit = torch.arange(2)
    _, _, ref = _per_unit(model, x, y, unit, "hooks")
    for mode in ("functorch", "vmap", "unit-backward"):
        _, _, grads = _per_unit(model, x, y, unit, mode)
        for g, r in zip(grads, ref, strict=True):
            assert torch.allclose(g, r, atol=1e-5, rtol=1e-4), mode
    # ExpandedWeights has no rule for MSR-3D's softmax over a weight: a clear refusal.
    with pytest.raises(ValueError, match="'ew' cannot train MSR3D"):
        _per_unit(model, x, y, unit, "ew")


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_poisson_draw_gives_no_units(mode):
    model = build_model("ststnet")
    x, y = _batch("ststnet", 0)
    loss, logits, grads = _per_unit(model, x, y, torch.zeros(0, dtype=torch.long), mode)
    assert float(loss) == 0.0 and logits.shape == (0, 3)
    assert [g.shape for g in grads] == [(0, *p.shape) for p in model.parameters()]


@pytest.mark.parametrize("mode", MODES)
def test_the_model_is_a_plain_module_again_after_close(mode):
    model = build_model("ststnet")
    x, y = _batch("ststnet", 3)
    _per_unit(model, x, y, torch.arange(3), mode)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="'fast'"):
        UnitGradients(build_model("ststnet"), "fast")  # type: ignore[arg-type]


def test_the_default_is_one_of_the_modes():
    assert DEFAULT_MODE in MODES
