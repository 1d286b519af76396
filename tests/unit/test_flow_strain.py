"""Optical flow accuracy on known sub-pixel shifts, and optical strain on known fields."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from client.preprocessing.optical_flow import (
    FlowMethodUnavailable,
    available_flow_methods,
    compute_flow,
    describe_flow_method,
    optical_strain,
    tvl1_available,
)


def smooth_texture(size: int = 128, sigma: float = 2.0, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), sigma)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    return tex.astype(np.uint8)


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        img, m, img.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


@pytest.mark.parametrize("method", ["dis", "farneback"])
@pytest.mark.parametrize("dx, dy", [(1.3, -0.7), (0.4, 0.25), (-2.6, 1.1)])
def test_recovers_known_subpixel_shift(method, dx, dy):
    a = smooth_texture(seed=1)
    b = shifted(a, dx, dy)
    flow = compute_flow(a, b, method)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8].reshape(-1, 2)
    median = np.median(inner, axis=0)
    assert median[0] == pytest.approx(dx, abs=0.2)
    assert median[1] == pytest.approx(dy, abs=0.2)
    # Not only the median: nearly every interior vector is within 0.3 px.
    error = np.hypot(inner[:, 0] - dx, inner[:, 1] - dy)
    assert np.mean(error < 0.3) > 0.95


def test_dis_is_subpixel_accurate_to_a_tenth_of_a_pixel():
    a = smooth_texture(seed=2, sigma=2.5)
    flow = compute_flow(a, shifted(a, 1.3, -0.7), "dis")
    median = np.median(flow[8:-8, 8:-8].reshape(-1, 2), axis=0)
    assert np.hypot(median[0] - 1.3, median[1] + 0.7) < 0.1


def test_identical_frames_give_zero_flow():
    a = smooth_texture(seed=3)
    assert np.abs(compute_flow(a, a, "dis")).max() < 1e-3


def test_bgr_input_is_converted_and_sizes_must_match():
    a = smooth_texture(seed=4)
    bgr = np.dstack([a] * 3)
    np.testing.assert_allclose(compute_flow(bgr, bgr, "dis"), 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="differ in size"):
        compute_flow(a, a[:64], "dis")
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(a.astype(np.float32), a.astype(np.float32), "dis")


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown optical flow method 'lk'"):
        compute_flow(smooth_texture(), smooth_texture(), "lk")


def test_tvl1_needs_contrib_or_works():
    a = smooth_texture(seed=5, size=64)
    if tvl1_available():
        flow = compute_flow(a, shifted(a, 1.0, 0.0), "tvl1")
        assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(1.0, abs=0.2)
        assert "tvl1" in available_flow_methods()
    else:
        with pytest.raises(FlowMethodUnavailable, match="opencv-contrib"):
            compute_flow(a, a, "tvl1")
        assert available_flow_methods() == ("dis", "farneback")


def test_describe_flow_method_lists_parameters():
    description = describe_flow_method("dis")
    assert description["method"] == "dis"
    assert description["params"] == {"preset": "medium", "finest_scale": 0}
    assert description["opencv"] == cv2.__version__


# ---------------------------------------------------------------- strain


def grid(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def test_strain_of_pure_translation_is_zero():
    flow = np.zeros((32, 32, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.7, -0.4
    np.testing.assert_allclose(optical_strain(flow), 0.0, atol=1e-7)


@pytest.mark.parametrize("a", [0.05, -0.2])
def test_strain_of_linear_stretch_is_abs_a(a):
    xs, ys = grid()
    flow = np.stack([a * xs, np.zeros_like(xs)], axis=-1)
    strain = optical_strain(flow)
    assert strain.shape == (32, 32) and strain.dtype == np.float32
    np.testing.assert_allclose(strain, abs(a), rtol=1e-5)


def test_strain_of_vertical_stretch_and_shear():
    xs, ys = grid()
    np.testing.assert_allclose(
        optical_strain(np.stack([np.zeros_like(ys), 0.1 * ys], -1)), 0.1, rtol=1e-5
    )
    # Simple shear u = c*y: only the off-diagonal term, |eps| = sqrt(1/2) * |c|.
    np.testing.assert_allclose(
        optical_strain(np.stack([0.3 * ys, np.zeros_like(ys)], -1)), np.sqrt(0.5) * 0.3, rtol=1e-5
    )
    # Combined: u_x = 0.1, v_y = -0.2, u_y + v_x = 0.3.
    flow = np.stack([0.1 * xs + 0.1 * ys, 0.2 * xs - 0.2 * ys], -1)
    np.testing.assert_allclose(optical_strain(flow), np.sqrt(0.01 + 0.04 + 0.5 * 0.09), rtol=1e-5)


def test_strain_of_recovered_translation_flow_is_small():
    a = smooth_texture(seed=6)
    strain = optical_strain(compute_flow(a, shifted(a, 1.3, -0.7), "dis"))
    assert np.median(strain[8:-8, 8:-8]) < 0.02


def test_strain_rejects_wrong_shape():
    with pytest.raises(ValueError, match="HxWx2"):
        optical_strain(np.zeros((8, 8), np.float32))
