"""Apex spotting for datasets without an apex label (SMIC).

The apex is the frame where the face has moved furthest from its onset state,
so for every frame t of the clip the dense flow onset -> t is computed on the
clip's aligned face crops, the rigid head motion (median vector) removed, and
the frame of the largest motion taken.  The score of a frame is a high
percentile of the flow magnitude rather than the mean: a micro-expression moves
a small part of the face (brows, lip corners), which a mean over the whole
crop would dilute into the noise.  Scores are smoothed over 3 frames, so a
single noisy frame cannot win.

Flow is computed at `work_size` (64 px): spotting only needs to rank frames,
and that costs a quarter of the full-size flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from client.preprocessing.optical_flow import compute_flow, remove_rigid_motion

SPOTTING_METHOD = "peak_flow_from_onset"


@dataclass(frozen=True)
class SpottingConfig:
    work_size: int = 64
    percentile: float = 95.0
    smooth_frames: int = 3


@dataclass(frozen=True)
class ApexSpot:
    index: int  # position in the sequence given (0 = onset)
    scores: np.ndarray  # motion score of every frame

    def describe(self, config: SpottingConfig, first_frame: int) -> dict[str, Any]:
        return {
            "method": SPOTTING_METHOD,
            "apex": first_frame + self.index,
            "peak_score": round(float(self.scores[self.index]), 4),
            **{k: getattr(config, k) for k in ("work_size", "percentile", "smooth_frames")},
        }


def motion_scores(
    faces_gray: Sequence[np.ndarray], flow_method: str, config: SpottingConfig
) -> np.ndarray:
    """Motion of every frame relative to frames[0] (0 for the onset itself)."""
    size = config.work_size
    small = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces_gray]
    scores = np.zeros(len(small), dtype=np.float64)
    for t in range(1, len(small)):
        flow = remove_rigid_motion(compute_flow(small[0], small[t], flow_method))[0].reshape(-1, 2)
        scores[t] = np.percentile(np.hypot(flow[:, 0], flow[:, 1]), config.percentile)
    return scores


def spot_apex(
    faces_gray: Sequence[np.ndarray],
    flow_method: str = "dis",
    config: SpottingConfig = SpottingConfig(),
) -> ApexSpot:
    """The frame of peak motion from the onset, among `faces_gray` (onset first)."""
    if len(faces_gray) < 2:
        raise ValueError("apex spotting needs at least the onset and one more frame")
    scores = motion_scores(faces_gray, flow_method, config)
    k = max(1, config.smooth_frames)
    smoothed = np.convolve(scores, np.ones(k) / k, mode="same") if k > 1 else scores
    smoothed[0] = -np.inf  # the onset is never its own apex
    return ApexSpot(index=int(np.argmax(smoothed)), scores=scores)
