"""Optional Eulerian motion magnification (linear, Wu et al. 2012).

Micro-expressions move the skin by 1-3 px; magnifying that motion before the
flow is computed raises it above sensor noise.  Linear Eulerian magnification
does it without tracking anything: each pixel's intensity, low-passed in space,
is band-passed in time and the band added back amplified,

    I'(t) = I(t) + alpha * bandpass_t(G * I)(t).

The temporal band-pass is the difference of two first-order IIR low-passes
(the form Wu et al. use for motion), so it needs no fps and no look-ahead: the
onset frame itself is never changed, and every later frame only depends on
earlier ones.  Cut-offs are given per frame (`r_fast` > `r_slow`), so one
setting behaves alike at 100 and 200 fps as long as the clip is sampled
densely.  alpha 0 turns it off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class MagnificationConfig:
    alpha: float = 0.0  # amplification; 0 = off
    r_fast: float = 0.4  # IIR coefficient of the faster low-pass (upper cut-off)
    r_slow: float = 0.05  # IIR coefficient of the slower low-pass (lower cut-off)
    blur_sigma: float = 2.0  # spatial low-pass (pixels at face size)

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"magnification alpha {self.alpha} must be >= 0")
        if not 0 < self.r_slow < self.r_fast <= 1:
            raise ValueError(f"need 0 < r_slow ({self.r_slow}) < r_fast ({self.r_fast}) <= 1")

    @property
    def enabled(self) -> bool:
        return self.alpha > 0

    def describe(self) -> dict[str, Any]:
        return {"method": "linear_eulerian_iir", **asdict(self)}


def magnify(frames_gray: Sequence[np.ndarray], config: MagnificationConfig) -> list[np.ndarray]:
    """Magnified copies of uint8 gray frames (same order; frames[0] unchanged)."""
    if not config.enabled or not frames_gray:
        return list(frames_gray)
    out = []
    fast = slow = None
    for frame in frames_gray:
        smooth = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), config.blur_sigma)
        if fast is None:
            fast, slow = smooth.copy(), smooth.copy()
        else:
            fast = (1 - config.r_fast) * fast + config.r_fast * smooth
            slow = (1 - config.r_slow) * slow + config.r_slow * smooth
        band = fast - slow
        out.append(np.clip(frame.astype(np.float32) + config.alpha * band, 0, 255).astype(np.uint8))
    return out
