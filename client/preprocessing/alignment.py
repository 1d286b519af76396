"""Eye-based face alignment: one similarity transform per clip.

The eyes are found with OpenCV's bundled Haar eye cascade inside the upper part
of the detected face box (onset frame only), each eye centre is refined to the
dark pupil/iris blob, and a similarity transform (rotation, uniform scale,
translation) maps the two centres to fixed positions of the output crop.  The
same matrix is applied to every frame of the clip: like the fixed crop box,
re-estimating it per frame would add jitter as large as the expression.

Uniform scale keeps horizontal and vertical flow comparable; removing in-plane
rotation makes "up" mean the same for every subject, which the flow channels
(u, v) depend on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from client.preprocessing.face_detection import FaceBox, load_cascade

EYE_CASCADE_FILE = "haarcascade_eye.xml"
# Target eye centres as fractions of the output side: a frontal face box
# widened by the default 10 % margin puts the eyes about here, so aligned and
# unaligned crops show the face at about the same scale.
EYE_Y = 0.38
EYE_DISTANCE = 0.34

Point = tuple[float, float]


@dataclass(frozen=True)
class EyePair:
    left: Point  # the eye on the image's left
    right: Point

    @property
    def angle_deg(self) -> float:
        """Angle of the inter-ocular line against the horizontal (y down)."""
        return math.degrees(math.atan2(self.right[1] - self.left[1], self.right[0] - self.left[0]))


def _pupil_centre(gray_eye: np.ndarray) -> Point:
    """Centre of the iris in an eye box: the centroid of the darkest pixels of
    the box's central half.

    The central half leaves out the brow and lid shadows at the box edges; the
    refinement matters because a 2 px vertical error over a 45 px eye distance
    is already 2.5 degrees of roll.
    """
    h, w = gray_eye.shape
    y0, x0 = h // 4, w // 4
    centre = cv2.GaussianBlur(gray_eye, (3, 3), 0)[y0 : h - y0, x0 : w - x0]
    if centre.size == 0:
        return (w / 2.0, h / 2.0)
    ys, xs = np.nonzero(centre <= np.percentile(centre, 20))
    return (x0 + float(xs.mean()), y0 + float(ys.mean()))


def detect_eyes(
    image_bgr: np.ndarray, face: FaceBox, cascade_path: str | None = None
) -> EyePair | None:
    """Eye centres (image coordinates) inside `face`, or None when two are not found."""
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    h_img, w_img = gray.shape
    # Eyes lie in the upper ~60 % of a frontal face box; searching only there
    # excludes nostrils and mouth corners, the cascade's usual false hits.
    x0, x1 = max(0, face.x), min(w_img, face.x + face.w)
    y0, y1 = max(0, face.y + int(0.1 * face.h)), min(h_img, face.y + int(0.6 * face.h))
    roi = gray[y0:y1, x0:x1]
    if roi.size == 0:
        return None
    cascade = load_cascade(cascade_path or str(Path(cv2.data.haarcascades) / EYE_CASCADE_FILE))
    side = max(4, face.w // 8)
    boxes = cascade.detectMultiScale(
        cv2.equalizeHist(roi), scaleFactor=1.05, minNeighbors=3, minSize=(side, side)
    )
    mid = face.x + face.w / 2.0 - x0
    halves: dict[bool, tuple[int, int, int, int]] = {}
    for bx, by, bw, bh in sorted((tuple(map(int, b)) for b in boxes), key=lambda b: -b[2] * b[3]):
        is_left = bx + bw / 2.0 < mid
        halves.setdefault(is_left, (bx, by, bw, bh))
    if len(halves) < 2:
        return None
    centres = []
    for is_left in (True, False):
        bx, by, bw, bh = halves[is_left]
        px, py = _pupil_centre(roi[by : by + bh, bx : bx + bw])
        centres.append((x0 + bx + px, y0 + by + py))
    return EyePair(left=centres[0], right=centres[1])


def alignment_matrix(eyes: EyePair, face_size: int) -> np.ndarray:
    """2x3 similarity transform putting the eyes at their fixed positions."""
    (lx, ly), (rx, ry) = eyes.left, eyes.right
    dx, dy = rx - lx, ry - ly
    distance = math.hypot(dx, dy)
    if distance < 1.0:
        raise ValueError("eye centres coincide")
    scale = EYE_DISTANCE * face_size / distance
    angle = math.atan2(dy, dx)
    c, s = scale * math.cos(-angle), scale * math.sin(-angle)
    # Rotate+scale about the left eye, then move it to its target.
    target_l = ((0.5 - EYE_DISTANCE / 2.0) * face_size, EYE_Y * face_size)
    tx = target_l[0] - (c * lx - s * ly)
    ty = target_l[1] - (s * lx + c * ly)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def apply_alignment(image: np.ndarray, matrix: np.ndarray, face_size: int) -> np.ndarray:
    """Warp one frame with the clip's matrix (replicated borders add no motion)."""
    return cv2.warpAffine(
        image,
        matrix,
        (face_size, face_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def transform_point(matrix: np.ndarray, point: Point) -> Point:
    x, y = point
    return (
        float(matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]),
        float(matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]),
    )


def describe_alignment(eyes: EyePair | None, matrix: np.ndarray | None) -> dict[str, Any]:
    """Metadata entry: what alignment did for this clip."""
    if eyes is None or matrix is None:
        return {
            "method": "eyes",
            "applied": False,
            "reason": "two eyes not found in the onset frame; face box crop used",
        }
    return {
        "method": "eyes",
        "applied": True,
        "cascade": EYE_CASCADE_FILE,
        "left_eye": [round(v, 2) for v in eyes.left],
        "right_eye": [round(v, 2) for v in eyes.right],
        "roll_deg": round(eyes.angle_deg, 3),
        "eye_targets": {"y": EYE_Y, "distance": EYE_DISTANCE},
        "matrix": [[round(float(v), 6) for v in row] for row in matrix],
    }


def align_frames(
    frames: Sequence[np.ndarray], matrix: np.ndarray, face_size: int
) -> list[np.ndarray]:
    return [apply_alignment(frame, matrix, face_size) for frame in frames]
