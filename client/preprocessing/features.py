"""Onset-to-apex motion features: the 3x28x28 (u, v, strain) input of STSTNet-style models.

Pipeline for one clip (`compute_clip_features`):

1. Detect the face on the onset frame and crop every frame with that one box
   (face_crop.py), or, with `alignment="eyes"`, warp every frame with one
   eye-based similarity transform (alignment.py); resize to `face_size`, gray.
   Optional Eulerian magnification (magnification.py) of the crop sequence; the
   apex is spotted (apex_spotting.py) when the clip has no apex label.
2. Dense flow onset -> apex at face_size (optical_flow.py).
3. Subtract the median flow vector: the face crop is mostly skin that does not
   take part in a micro-expression, so the median is the rigid head drift, which
   is often as large as the expression itself.
4. Shrink the flow field to `feature_size` with INTER_AREA (area average, no
   aliasing) and scale the vectors by feature_size / face_size, so they stay in
   pixels of the new grid.
5. Optical strain of the shrunk field.
6. Normalise per clip (below) and stack as float32 (3, F, F).

Normalisation ("robust_max", the default): u and v are divided by the
`scale_percentile` of the flow magnitude, strain by the same percentile of the
strain, then clipped to [-1, 1] and [0, 1].  Raw amplitudes vary by an order of
magnitude between subjects, cameras and datasets (CASME II at 200 fps and 280 px
faces vs SMIC at 100 fps), so without this the network would learn the camera.
A percentile instead of the max keeps one noisy pixel from flattening the rest.
Each divisor has a floor (`min_flow_px` face pixels, `min_strain`) so a clip with
almost no motion stays near zero instead of having its noise blown up to full
scale.  The divisors are recorded in the metadata, so raw amplitudes can be
recovered.  "none" keeps raw units (feature-grid pixels, dimensionless strain).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from client.datasets.clip_record import ClipError
from client.preprocessing.alignment import (
    align_frames,
    alignment_matrix,
    describe_alignment,
    detect_eyes,
)
from client.preprocessing.apex_spotting import SpottingConfig, spot_apex
from client.preprocessing.face_crop import apply_crop, crop_box_for_face, full_frame_box
from client.preprocessing.face_detection import (
    FaceDetector,
    available_detectors,
    detect_largest_face,
    get_detector,
)
from client.preprocessing.magnification import MagnificationConfig, magnify
from client.preprocessing.optical_flow import (
    FLOW_METHODS,
    compute_flow,
    describe_flow_method,
    optical_strain,
    remove_rigid_motion,
    shrink_flow,
)
from client.preprocessing.temporal_interpolation import flow_sequence

# Bump when the feature computation changes in a way the config does not show;
# it is part of the fingerprint, so stale cache entries are simply not found.
FEATURE_VERSION = 2
CHANNELS = ("u", "v", "strain")
NORMALIZATIONS = ("robust_max", "none")
ALIGNMENTS = ("none", "eyes")


@dataclass(frozen=True)
class PreprocessConfig:
    face_size: int = 128
    feature_size: int = 28
    flow_method: str = "dis"
    detector: str = "haar"
    skip_detection: bool = False  # frames are already face crops (e.g. CASME II "Cropped")
    margin: float = 0.1  # added on each side of the detected box, as a fraction of its size
    remove_global_motion: bool = True
    normalization: str = "robust_max"
    scale_percentile: float = 99.0
    min_flow_px: float = 0.2  # at face_size; motion below this is treated as noise
    min_strain: float = 0.02
    # Eye-based similarity alignment ("eyes") instead of the plain face box;
    # falls back to the box (recorded in the metadata) when two eyes are not found.
    alignment: str = "none"
    detector_model: str = ""  # model file of a detector that needs one (yunet)
    magnification_alpha: float = 0.0  # Eulerian motion magnification; 0 = off
    sequence_length: int = 0  # also cache a fixed-length flow sequence (e.g. 16); 0 = off
    spotting_percentile: float = 95.0  # apex spotting score, when a clip has no apex label

    def __post_init__(self) -> None:
        if self.flow_method not in FLOW_METHODS:
            raise ValueError(
                f"flow_method {self.flow_method!r} not one of {', '.join(FLOW_METHODS)}"
            )
        if not self.skip_detection and self.detector not in available_detectors():
            raise ValueError(
                f"detector {self.detector!r} not one of {', '.join(available_detectors())}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization {self.normalization!r} not one of {', '.join(NORMALIZATIONS)}"
            )
        if not 8 <= self.feature_size <= self.face_size:
            raise ValueError(
                f"need 8 <= feature_size ({self.feature_size}) <= face_size ({self.face_size})"
            )
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin {self.margin} outside [0, 1]")
        if not 50.0 <= self.scale_percentile <= 100.0:
            raise ValueError(f"scale_percentile {self.scale_percentile} outside [50, 100]")
        if self.min_flow_px <= 0 or self.min_strain <= 0:
            raise ValueError("min_flow_px and min_strain must be > 0")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment {self.alignment!r} not one of {', '.join(ALIGNMENTS)}")
        if self.alignment != "none" and self.skip_detection:
            raise ValueError(
                "alignment needs face detection; it cannot be combined with skip_detection"
            )
        if self.sequence_length != 0 and self.sequence_length < 2:
            raise ValueError(f"sequence_length {self.sequence_length} must be 0 (off) or >= 2")
        if not 50.0 <= self.spotting_percentile <= 100.0:
            raise ValueError(f"spotting_percentile {self.spotting_percentile} outside [50, 100]")
        MagnificationConfig(alpha=self.magnification_alpha)  # validates alpha

    @property
    def magnification(self) -> MagnificationConfig:
        return MagnificationConfig(alpha=self.magnification_alpha)

    @property
    def spotting(self) -> SpottingConfig:
        return SpottingConfig(percentile=self.spotting_percentile)

    def needs_all_frames(self) -> bool:
        """Whether features need every frame from onset to offset, not just
        onset and apex (magnification filters in time; sequences sample it)."""
        return self.magnification.enabled or self.sequence_length > 0

    def make_detector(self) -> FaceDetector | None:
        """The configured detector; None when frames are already face crops."""
        if self.skip_detection:
            return None
        options = {"model_path": self.detector_model} if self.detector_model else {}
        return get_detector(self.detector, **options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """Stable hash of every setting (and the feature code version).

        Part of the cache key: any change in settings gives new cache entries.
        JSON with sorted keys, so it does not depend on field order or Python's
        per-process hash seed.
        """
        payload = json.dumps({"feature_version": FEATURE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FeatureResult:
    features: np.ndarray  # (3, F, F) float32: u, v, strain
    metadata: dict[str, Any] = field(default_factory=dict)
    sequence: np.ndarray | None = None  # (T, 2, F, F) float32 flow, when sequence_length > 0


def flow_features(
    onset_face_gray: np.ndarray, apex_face_gray: np.ndarray, config: PreprocessConfig
) -> FeatureResult:
    """Steps 2-6 on already aligned gray face crops of equal size."""
    flow = compute_flow(onset_face_gray, apex_face_gray, config.flow_method)
    if not np.isfinite(flow).all():
        raise ClipError(f"{config.flow_method} optical flow produced non-finite values")

    global_motion = np.zeros(2, dtype=np.float32)
    if config.remove_global_motion:
        flow, global_motion = remove_rigid_motion(flow)

    small, factor = shrink_flow(flow, config.feature_size)
    strain = optical_strain(small)
    u, v = small[..., 0], small[..., 1]

    flow_scale = strain_scale = 1.0
    if config.normalization == "robust_max":
        magnitude = np.hypot(u, v)
        flow_scale = max(
            float(np.percentile(magnitude, config.scale_percentile)), config.min_flow_px * factor
        )
        strain_scale = max(float(np.percentile(strain, config.scale_percentile)), config.min_strain)
        u = np.clip(u / flow_scale, -1.0, 1.0)
        v = np.clip(v / flow_scale, -1.0, 1.0)
        strain = np.clip(strain / strain_scale, 0.0, 1.0)

    features = np.stack([u, v, strain]).astype(np.float32)
    stats = {
        "global_motion_px": [round(float(x), 4) for x in global_motion],
        "flow_scale": flow_scale,  # divisor applied to u, v (feature-grid pixels)
        "strain_scale": strain_scale,
        "vector_scale_factor": factor,
    }
    return FeatureResult(features=features, metadata=stats)


@dataclass(frozen=True)
class FaceTrack:
    """A clip's gray face crops (one crop/alignment for all frames) and how they were made."""

    faces: list[np.ndarray]
    metadata: dict[str, Any]


def face_crops(frames_bgr: list[np.ndarray], config: PreprocessConfig) -> FaceTrack:
    """Detect (and align) once on frames_bgr[0], the onset; apply to every frame."""
    first = frames_bgr[0]
    if any(f.shape[:2] != first.shape[:2] for f in frames_bgr):
        raise ClipError(
            f"frames of the clip differ in size (onset frame is {first.shape[1]}x{first.shape[0]})"
        )
    size = config.face_size
    detector = config.make_detector()
    meta: dict[str, Any] = {
        "detector": detector.describe()
        if detector is not None
        else {"name": "none (frames are face crops)"},
        "frame_size": [int(first.shape[1]), int(first.shape[0])],
        "face_box": None,
    }
    faces = None
    if detector is None:
        box = full_frame_box(first.shape)
    else:
        face = detect_largest_face(first, detector)
        meta["face_box"] = face.as_list()
        box = crop_box_for_face(face, config.margin)
        if config.alignment == "eyes":
            eyes = detect_eyes(first, face)
            matrix = alignment_matrix(eyes, size) if eyes is not None else None
            meta["alignment"] = describe_alignment(eyes, matrix)
            if matrix is not None:
                faces = align_frames(frames_bgr, matrix, size)
    meta["crop_box"] = box.as_list() if faces is None else None
    if faces is None:
        faces = [apply_crop(frame, box, size) for frame in frames_bgr]
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in faces]
    if config.magnification.enabled:
        gray = magnify(gray, config.magnification)
        meta["magnification"] = config.magnification.describe()
    return FaceTrack(gray, meta)


def compute_sequence_features(
    frames_bgr: list[np.ndarray],
    config: PreprocessConfig,
    apex_index: int | None,
    first_frame: int = 0,
) -> FeatureResult:
    """Features of a clip given as frames from its onset (frames_bgr[0]).

    `apex_index` is the apex's position in `frames_bgr`; None spots it (the
    spotted frame number, `first_frame` + position, goes in the metadata).
    """
    track = face_crops(frames_bgr, config)
    observed = dict(track.metadata)
    if apex_index is None:
        spot = spot_apex(track.faces, config.flow_method, config.spotting)
        apex_index = spot.index
        observed["apex_spotting"] = spot.describe(config.spotting, first_frame)
    observed["apex_source"] = "spotted" if "apex_spotting" in observed else "annotation"
    result = flow_features(track.faces[0], track.faces[apex_index], config)
    sequence = None
    if config.sequence_length:
        sequence = flow_sequence(
            track.faces,
            config.sequence_length,
            config.flow_method,
            config.feature_size,
            config.remove_global_motion,
        )
        observed["sequence"] = {
            "length": config.sequence_length,
            "shape": list(sequence.shape),
            "interpolation": "linear",
        }
    return FeatureResult(
        result.features, record_metadata(config, **observed, **result.metadata), sequence
    )


def compute_clip_features(
    onset_bgr: np.ndarray, apex_bgr: np.ndarray, config: PreprocessConfig
) -> FeatureResult:
    """Full pipeline from the two raw frames; metadata records everything used."""
    if onset_bgr.shape[:2] != apex_bgr.shape[:2]:
        raise ClipError(
            f"onset frame {onset_bgr.shape[:2]} and apex frame {apex_bgr.shape[:2]} differ in size"
        )
    return compute_sequence_features([onset_bgr, apex_bgr], config, apex_index=1)


def clip_features(
    onset_bgr: np.ndarray, apex_bgr: np.ndarray, config: PreprocessConfig
) -> np.ndarray:
    """(3, feature_size, feature_size) float32 features (u, v, strain) of one clip."""
    return compute_clip_features(onset_bgr, apex_bgr, config).features


def record_metadata(config: PreprocessConfig, **observed: Any) -> dict[str, Any]:
    """Everything needed to know how a cached feature was made.

    The flow entry names the algorithm actually run with its parameters (there is
    no fallback, so it is always `config.flow_method`); `observed` adds per-clip
    facts such as the detector description, face box and normalisation divisors.
    """
    return {
        "feature_version": FEATURE_VERSION,
        "config": config.to_dict(),
        "config_fingerprint": config.fingerprint(),
        "channels": list(CHANNELS),
        "shape": [len(CHANNELS), config.feature_size, config.feature_size],
        "face_size": config.face_size,
        "feature_size": config.feature_size,
        "flow": describe_flow_method(config.flow_method),
        "opencv": cv2.__version__,
        **observed,
    }
