"""Dense optical flow between two gray frames, and optical strain.

Micro-expressions move the skin by a few pixels at most (<= 3 px on a 128 px
face), so sub-pixel accuracy matters more than speed or large-motion range:

* "dis" (default): DIS flow at the MEDIUM preset, but with the finest scale set to
  0 so the last refinement runs at full resolution.  The stock preset stops at
  half resolution, which on a known 1.3/-0.7 px shift gave errors of ~0.1 px
  versus ~0.05 px at full resolution, for ~5 ms per 128x128 pair.
* "farneback": polynomial-expansion flow, always available, similar accuracy.
* "tvl1": the classic MER choice (STSTNet, OFF-ApexNet), available only with
  opencv-contrib (cv2.optflow).  No silent fallback: a run that asked for TV-L1
  and got DIS would produce features that do not match the cache metadata.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

FLOW_METHODS = ("dis", "farneback", "tvl1")

# Parameters are fixed here (not user knobs) so the cache fingerprint plus the
# method name fully determine the features; they are also written to metadata.
_DIS_PARAMS: dict[str, Any] = {"preset": "medium", "finest_scale": 0}
_FARNEBACK_PARAMS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
_TVL1_PARAMS: dict[str, Any] = {
    "tau": 0.25,
    "lambda": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
}


class FlowMethodUnavailable(RuntimeError):
    """The requested flow algorithm is not available in this OpenCV build."""


def tvl1_available() -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def available_flow_methods() -> tuple[str, ...]:
    return tuple(m for m in FLOW_METHODS if m != "tvl1" or tvl1_available())


def check_flow_method(method: str) -> None:
    """Raise a clear error if `method` is unknown or not installed."""
    if method not in FLOW_METHODS:
        raise ValueError(
            f"unknown optical flow method {method!r}; choose from {', '.join(FLOW_METHODS)}"
        )
    if method == "tvl1" and not tvl1_available():
        raise FlowMethodUnavailable(
            "optical flow 'tvl1' needs cv2.optflow, which only opencv-contrib-python(-headless) provides; "
            "install it (below 5) or use flow_method='dis' or 'farneback'"
        )


def describe_flow_method(method: str) -> dict[str, Any]:
    """The algorithm and its exact parameters, for the cache metadata."""
    check_flow_method(method)
    params = {"dis": _DIS_PARAMS, "farneback": _FARNEBACK_PARAMS, "tvl1": _TVL1_PARAMS}[method]
    return {"method": method, "params": dict(params), "opencv": cv2.__version__}


def _as_gray(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise ValueError(f"{name} must be a 2-D gray image (or BGR), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    return image


def compute_flow(prev_gray: np.ndarray, next_gray: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow (HxWx2 float32, [...,0]=u horizontal, [...,1]=v vertical, in pixels)
    such that prev(x, y) ~ next(x + u, y + v)."""
    check_flow_method(method)
    prev_gray = _as_gray(prev_gray, "prev_gray")
    next_gray = _as_gray(next_gray, "next_gray")
    if prev_gray.shape != next_gray.shape:
        raise ValueError(f"frames differ in size: {prev_gray.shape} vs {next_gray.shape}")

    if method == "dis":
        # Created per call: cheap, and a shared instance is not thread-safe.
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(_DIS_PARAMS["finest_scale"])
        flow = dis.calc(prev_gray, next_gray, None)
    elif method == "farneback":
        p = _FARNEBACK_PARAMS
        flow = cv2.calcOpticalFlowFarneback(
            prev_gray, next_gray, None,
            p["pyr_scale"], p["levels"], p["winsize"], p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"],
        )  # fmt: skip
    else:  # tvl1
        p = _TVL1_PARAMS
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        # Setters rather than constructor keywords: their names are stable
        # across contrib releases (the keyword for lambda is not).
        tvl1.setTau(p["tau"])
        tvl1.setLambda(p["lambda"])
        tvl1.setTheta(p["theta"])
        tvl1.setScalesNumber(p["nscales"])
        tvl1.setWarpingsNumber(p["warps"])
        tvl1.setEpsilon(p["epsilon"])
        flow = tvl1.calc(prev_gray, next_gray, None)
    return np.asarray(flow, dtype=np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the infinitesimal strain tensor of a flow field (HxW float32).

    |eps| = sqrt(u_x^2 + v_y^2 + 1/2 (u_y + v_x)^2), derivatives by central
    differences (np.gradient).  Strain is dimensionless, so it is unchanged when
    the flow field and its vectors are rescaled together.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be HxWx2, got shape {flow.shape}")
    u = flow[..., 0].astype(np.float64)
    v = flow[..., 1].astype(np.float64)
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def remove_rigid_motion(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flow minus its median vector, and that vector.

    A face crop is mostly skin that takes no part in a micro-expression, so the
    median is the rigid head drift, often as large as the expression itself.
    """
    global_motion = np.median(flow.reshape(-1, 2), axis=0).astype(np.float32)
    return flow - global_motion, global_motion


def shrink_flow(flow: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Flow resized to size x size (area average, no aliasing) with its vectors
    scaled by the same factor, so they stay in pixels of the new grid."""
    factor = size / flow.shape[1]
    return cv2.resize(flow, (size, size), interpolation=cv2.INTER_AREA) * np.float32(factor), factor
