"""Updates that are NaN/Inf, misshapen or too large are rejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from common.models import build_model
from server.update_validation import ValidationPolicy, array_map, screen_updates, validate_update


@pytest.fixture
def global_arrays() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    return array_map(ArrayRecord(build_model("ststnet", num_classes=3).state_dict()))


def _moved(arrays, scale):
    rng = np.random.default_rng(1)
    return {
        k: (v + scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in arrays.items()
    }


def test_honest_update_passes_and_reports_its_norm(global_arrays):
    verdict = validate_update(global_arrays, _moved(global_arrays, 1e-3), ValidationPolicy(5.0))
    assert verdict.ok and verdict.summary() == "ok"
    assert 0 < verdict.update_norm < 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_rejected(global_arrays, bad):
    update = dict(global_arrays)
    name = next(iter(update))
    arr = update[name].copy()
    arr.flat[0] = bad
    update[name] = arr
    verdict = validate_update(global_arrays, update, ValidationPolicy())
    assert not verdict.ok
    assert name in verdict.summary() and "non-finite" in verdict.summary()


def test_wrong_shape_missing_and_extra_arrays_rejected(global_arrays):
    update = dict(global_arrays)
    name = next(iter(update))
    update[name] = np.zeros((1, 2), dtype=np.float32)
    verdict = validate_update(global_arrays, update, ValidationPolicy())
    assert not verdict.ok and "shape (1, 2)" in verdict.summary()
    update = {k: v for k, v in global_arrays.items() if k != name}
    update["evil"] = np.zeros(3, dtype=np.float32)
    summary = validate_update(global_arrays, update, ValidationPolicy()).summary()
    assert f"missing arrays: {name}" in summary and "unexpected arrays: evil" in summary


def test_dtype_change_rejected(global_arrays):
    update = {k: v.astype(np.float64) for k, v in global_arrays.items()}
    assert "dtype float64" in validate_update(global_arrays, update, ValidationPolicy()).summary()


def test_norm_bound(global_arrays):
    big = {k: v * 50 + 1 for k, v in global_arrays.items()}
    verdict = validate_update(global_arrays, big, ValidationPolicy(max_update_norm=10.0))
    assert not verdict.ok and "exceeds the bound 10" in verdict.summary()
    # Without a bound the same update is only measured.
    assert validate_update(global_arrays, big, ValidationPolicy()).ok


def test_screen_keeps_only_valid_updates(global_arrays):
    nan = {k: np.full_like(v, np.nan) for k, v in global_arrays.items()}
    flipped = {k: (-20 * v).astype(v.dtype) for k, v in global_arrays.items()}
    updates = [_moved(global_arrays, 1e-3), nan, flipped, _moved(global_arrays, 2e-3)]
    result = screen_updates(global_arrays, updates, ValidationPolicy(max_update_norm=5.0))
    assert result.accepted == [0, 3]
    assert set(result.rejected) == {1, 2}
    assert "non-finite" in result.rejected[1] and "exceeds" in result.rejected[2]
    assert set(result.norms) == {0, 2, 3}


def test_poisoned_arrays_reverse_or_scale_the_update():
    from flwr.app import ArrayRecord as AR

    from simulations.faults import poisoned_arrays

    g = AR([np.ones(3, dtype=np.float32)])
    w = AR([np.full(3, 2.0, dtype=np.float32)])
    np.testing.assert_allclose(poisoned_arrays(g, w, "sign-flip", None).to_numpy_ndarrays()[0], 0.0)
    np.testing.assert_allclose(poisoned_arrays(g, w, "scale", None).to_numpy_ndarrays()[0], 11.0)
    np.testing.assert_allclose(poisoned_arrays(g, w, "sign-flip", 5).to_numpy_ndarrays()[0], -4.0)
    with pytest.raises(ValueError, match="poison mode 'bogus'"):
        poisoned_arrays(g, w, "bogus", None)
