"""Cropping the face out of every frame of a clip with ONE box.

The box is found once, on the onset frame, and reused for every other frame.
Re-detecting per frame would make the box jitter by a pixel or two, which is as
large as the micro-expression itself and would show up as fake motion; a fixed
box keeps real head drift as a global shift, which the feature step removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from client.preprocessing.face_detection import FaceBox, FaceDetector, detect_largest_face


@dataclass(frozen=True)
class CropBox:
    """A square crop [x0, x1) x [y0, y1); may extend past the image (padded)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def side(self) -> int:
        return self.x1 - self.x0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


def crop_box_for_face(face: FaceBox, margin: float = 0.1) -> CropBox:
    """A square box centred on the face, `margin` of its size added on each side.

    Square so the resize to face_size does not stretch one axis (which would scale
    horizontal and vertical flow differently).
    """
    side = max(face.w, face.h) * (1.0 + 2.0 * margin)
    side_px = max(2, int(round(side)))
    cx = face.x + face.w / 2.0
    cy = face.y + face.h / 2.0
    x0 = int(round(cx - side_px / 2.0))
    y0 = int(round(cy - side_px / 2.0))
    return CropBox(x0, y0, x0 + side_px, y0 + side_px)


def full_frame_box(image_shape: Sequence[int]) -> CropBox:
    """The centred square of a frame; used when frames are already face crops."""
    h, w = int(image_shape[0]), int(image_shape[1])
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return CropBox(x0, y0, x0 + side, y0 + side)


def apply_crop(image: np.ndarray, box: CropBox, face_size: int) -> np.ndarray:
    """Cut `box` out of `image` and resize it to face_size x face_size.

    Parts of the box outside the image are filled by replicating the border
    (static, so they contribute no motion) instead of shifting the box, which
    would move the face off-centre differently from clip to clip.
    """
    h, w = image.shape[:2]
    pad_left, pad_top = max(0, -box.x0), max(0, -box.y0)
    pad_right, pad_bottom = max(0, box.x1 - w), max(0, box.y1 - h)
    patch = image[max(0, box.y0) : min(h, box.y1), max(0, box.x0) : min(w, box.x1)]
    if pad_left or pad_top or pad_right or pad_bottom:
        if patch.size == 0:
            raise ValueError(f"crop box {box.as_list()} lies outside the {w}x{h} image")
        patch = cv2.copyMakeBorder(
            patch, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE
        )
    # INTER_AREA when shrinking averages the pixels (no aliasing of skin texture
    # that flow would track as motion); INTER_CUBIC when enlarging.
    interpolation = cv2.INTER_AREA if box.side >= face_size else cv2.INTER_CUBIC
    return cv2.resize(patch, (face_size, face_size), interpolation=interpolation)


@dataclass(frozen=True)
class ClipCrop:
    faces: list[np.ndarray]  # face_size x face_size crops, same order as the input frames
    box: CropBox
    face: FaceBox | None  # None when detection was skipped


def crop_clip(
    frames: Sequence[np.ndarray],
    detector: FaceDetector | None,
    face_size: int = 128,
    margin: float = 0.1,
) -> ClipCrop:
    """Detect the face in frames[0] (the onset) and crop every frame with that box.

    `detector=None` means the frames are already face crops (e.g. CASME II
    "Cropped"); their centred square is used as is.
    """
    if not frames:
        raise ValueError("crop_clip needs at least one frame")
    if detector is None:
        face = None
        box = full_frame_box(frames[0].shape)
    else:
        face = detect_largest_face(frames[0], detector)
        box = crop_box_for_face(face, margin)
    return ClipCrop(
        faces=[apply_crop(frame, box, face_size) for frame in frames], box=box, face=face
    )
