"""Face detection behind a small interface, so detectors can be swapped by name.

The default is OpenCV's Haar frontal-face cascade, which ships inside the
opencv-python wheel (< 5) and so needs no download at run time.  A stronger
detector (e.g. a user-supplied YuNet ONNX file via cv2.FaceDetectorYN) or an
eye-based aligner plugs in through `register_detector` without touching callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from client.datasets.clip_record import ClipError


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixel coordinates of the image it was found in."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


class FaceNotFound(ClipError):
    category = "no_face"


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in a BGR image.  `describe()` goes into the cache metadata."""

    name: str

    def detect(self, image_bgr: np.ndarray) -> list[FaceBox]: ...

    def describe(self) -> dict[str, Any]: ...


HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"


@cache
def load_cascade(path: str) -> cv2.CascadeClassifier:
    # Loaded on first use and kept for the life of the process (each prepare
    # worker loads it once), never at import time.
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load Haar cascade {path}")
    return cascade


class HaarFaceDetector:
    """OpenCV Viola-Jones frontal-face detector.

    The image is histogram-equalised first (the cascade is sensitive to global
    contrast), and faces smaller than `min_size_fraction` of the shorter image
    side are ignored: in ME recordings the face fills much of the frame (about
    40-50 % of the shorter side in CASME II, SAMM and SMIC), tiny detections are
    background texture, and skipping the small scales makes detection ~3x faster
    on 640x480 frames.
    """

    name = "haar"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.2,
        cascade_path: str | None = None,
    ) -> None:
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self.cascade_path = cascade_path or str(Path(cv2.data.haarcascades) / HAAR_CASCADE_FILE)

    def detect(self, image_bgr: np.ndarray) -> list[FaceBox]:
        gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        gray = cv2.equalizeHist(gray)
        side = max(1, int(min(gray.shape[:2]) * self.min_size_fraction))
        boxes = load_cascade(self.cascade_path).detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
        )
        return [FaceBox(int(x), int(y), int(w), int(h)) for (x, y, w, h) in boxes]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cascade": Path(self.cascade_path).name,
            "scale_factor": self.scale_factor,
            "min_neighbors": self.min_neighbors,
            "min_size_fraction": self.min_size_fraction,
            "opencv": cv2.__version__,
        }


class YuNetFaceDetector:
    """OpenCV's YuNet CNN detector (cv2.FaceDetectorYN) from an ONNX file the
    user supplies.  Nothing is downloaded: the model is licensed and versioned
    separately (opencv_zoo "face_detection_yunet_2023mar.onnx"), and a device
    must not need the network to prepare its data."""

    name = "yunet"

    def __init__(
        self, model_path: str | Path = "", score_threshold: float = 0.6, nms_threshold: float = 0.3
    ) -> None:
        if not str(model_path):
            raise ValueError(
                "the yunet detector needs the path of a YuNet .onnx model (--detector-model)"
            )
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"YuNet model {path} not found; download face_detection_yunet_2023mar.onnx from "
                f"the opencv_zoo repository yourself and pass its path (fedmer never downloads models)"
            )
        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(
                f"this OpenCV ({cv2.__version__}) has no cv2.FaceDetectorYN; need OpenCV >= 4.5.4"
            )
        self.model_path = path
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._model: Any = None

    def detect(self, image_bgr: np.ndarray) -> list[FaceBox]:
        h, w = image_bgr.shape[:2]
        if self._model is None:
            self._model = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (w, h), self.score_threshold, self.nms_threshold
            )
        self._model.setInputSize((w, h))
        image = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        _, faces = self._model.detect(image)
        if faces is None:
            return []
        return [FaceBox(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[-1])) for f in faces]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_path.name,
            "model_bytes": self.model_path.stat().st_size,
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "opencv": cv2.__version__,
        }


_REGISTRY: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarFaceDetector,
    "yunet": YuNetFaceDetector,
}


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Make a detector available to `get_detector` / `PreprocessConfig.detector`."""
    _REGISTRY[name] = factory


def available_detectors() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_detector(name: str = "haar", **options: Any) -> FaceDetector:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown face detector {name!r}; available: {', '.join(available_detectors())}"
        ) from None
    return factory(**options)


def detect_largest_face(image_bgr: np.ndarray, detector: FaceDetector) -> FaceBox:
    """The largest face in the image; raises FaceNotFound when there is none.

    The largest box is the subject: other boxes are false positives or people in
    the background.
    """
    faces = detector.detect(image_bgr)
    if not faces:
        h, w = image_bgr.shape[:2]
        raise FaceNotFound(
            f"no face found by the {detector.name} detector in the onset frame ({w}x{h})"
        )
    return max(faces, key=lambda box: (box.area, box.score))
