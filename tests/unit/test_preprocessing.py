"""Face detection, cropping and onset->apex features on synthetic faces.

The helpers at the top (draw_face, warp_local, ...) are also used by
test_prepare.py.  The faces are drawn here, so the tests do not depend on the
cohort generator; one extra test uses that generator when it is present.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from client.datasets.clip_record import ClipError
from client.preprocessing.face_crop import CropBox, apply_crop, crop_box_for_face, crop_clip
from client.preprocessing.face_detection import (
    FaceBox,
    FaceDetector,
    FaceNotFound,
    HaarFaceDetector,
    available_detectors,
    detect_largest_face,
    get_detector,
    register_detector,
)
from client.preprocessing.features import (
    FEATURE_VERSION,
    PreprocessConfig,
    clip_features,
    compute_clip_features,
    flow_features,
    record_metadata,
)

# ---------------------------------------------------------------- helpers


def draw_face(size: int = 160, seed: int = 0, texture: float = 4.0) -> np.ndarray:
    """A blurred cartoon face (skin oval, eyes, brows, nose, mouth) with skin texture.

    The texture matters: real skin has pores and shading that optical flow
    locks on to; a flat cartoon would only give flow at the feature edges.
    """
    rng = np.random.default_rng(seed)
    s = size / 160
    c = size // 2
    img = np.full((size, size, 3), 90, np.float32)
    cv2.ellipse(img, (c, c), (int(48 * s), int(62 * s)), 0, 0, 360, (150, 175, 210), -1)
    for dx in (-20, 20):
        cv2.ellipse(
            img,
            (c + int(dx * s), c - int(14 * s)),
            (int(10 * s), int(5 * s)),
            0,
            0,
            360,
            (40, 40, 40),
            -1,
        )
        cv2.line(img, (c + int((dx - 12) * s), c - int(28 * s)), (c + int((dx + 12) * s), c - int(28 * s)),
                 (50, 50, 60), max(1, int(3 * s)))  # fmt: skip
    cv2.line(img, (c, c - int(8 * s)), (c, c + int(12 * s)), (120, 140, 170), max(1, int(3 * s)))
    cv2.ellipse(img, (c, c + int(30 * s)), (int(18 * s), int(6 * s)), 0, 0, 360, (60, 60, 140), -1)
    if texture:
        tex = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.5)
        img += (tex / tex.std() * texture)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 1.5 * s)
    return np.clip(img, 0, 255).astype(np.uint8)


def warp_local(
    img: np.ndarray, cx: float, cy: float, sigma: float, dx: float, dy: float
) -> np.ndarray:
    """Move the content near (cx, cy) by (dx, dy) px with a Gaussian fall-off."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    # remap is a backward map: dst(x) = src(x - d(x)) moves content by +d.
    return cv2.remap(img, xs - dx * g, ys - dy * g, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        img, m, img.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def add_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# Where the drawn features sit on a 160 px canvas.
MOUTH = (80, 110)
BROWS = (80, 52)


def expression_pair(
    region: tuple[int, int], amplitude: float = 2.0, size: int = 160, seed: int = 0
):
    """Onset and apex frames of a clip whose only motion is an upward push at `region`."""
    face = draw_face(size, seed)
    scale = size / 160
    apex = warp_local(
        face, region[0] * scale, region[1] * scale, 10 * scale, 0.0, -amplitude * scale
    )
    return add_noise(face, 1.0, seed + 1), add_noise(apex, 1.0, seed + 2)


def energy_halves(features: np.ndarray) -> tuple[float, float]:
    e = (features.astype(np.float64) ** 2).sum(axis=0)
    half = e.shape[0] // 2
    return float(e[:half].sum()), float(e[half:].sum())


# ---------------------------------------------------------------- detection


def test_haar_detects_drawn_face_and_returns_largest_box():
    face = draw_face(160)
    box = detect_largest_face(face, get_detector("haar"))
    assert isinstance(box, FaceBox)
    # The box contains the face centre and covers most of the oval (96x124 px).
    assert box.x < 80 < box.x + box.w and box.y < 80 < box.y + box.h
    assert 80 <= box.w <= 160 and box.w == box.h


def test_no_face_in_uniform_gray_image_raises_face_not_found():
    gray = np.full((160, 160, 3), 128, np.uint8)
    with pytest.raises(FaceNotFound) as info:
        detect_largest_face(gray, get_detector("haar"))
    assert isinstance(info.value, ClipError)
    assert "no face" in str(info.value)
    assert info.value.category == "no_face"


def test_detector_registry_by_name():
    assert "haar" in available_detectors()
    assert isinstance(get_detector("haar"), FaceDetector)
    with pytest.raises(ValueError, match="unknown face detector 'nope'.*haar"):
        get_detector("nope")

    class CentreDetector:
        """A stand-in for a future detector: the centred half of the image."""

        name = "centre"

        def detect(self, image_bgr):
            h, w = image_bgr.shape[:2]
            return [FaceBox(w // 4, h // 4, w // 2, h // 2)]

        def describe(self):
            return {"name": self.name}

    register_detector("centre-test", CentreDetector)
    box = detect_largest_face(np.zeros((100, 200, 3), np.uint8), get_detector("centre-test"))
    assert box.as_list() == [50, 25, 100, 50]


def test_haar_describe_names_cascade():
    assert HaarFaceDetector().describe()["cascade"] == "haarcascade_frontalface_default.xml"


# ---------------------------------------------------------------- cropping


def test_crop_box_is_square_centred_with_margin():
    box = crop_box_for_face(FaceBox(10, 20, 100, 80), margin=0.1)
    assert box.side == 120 and box.y1 - box.y0 == 120
    assert (box.x0 + box.x1) / 2 == 60 and (box.y0 + box.y1) / 2 == 60


def test_apply_crop_pads_outside_image_and_resizes():
    img = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    img = np.dstack([img] * 3)
    out = apply_crop(img, CropBox(-20, -20, 60, 60), face_size=40)
    assert out.shape == (40, 40, 3)
    # Replicated border: the top-left corner repeats pixel (0, 0).
    assert out[0, 0, 0] == img[0, 0, 0]


def test_crop_box_is_found_once_on_onset_and_reused():
    onset = draw_face(160)
    moved = shift(onset, 6.0, 0.0)  # the head drifted 6 px to the right
    crop = crop_clip([onset, moved], get_detector("haar"), face_size=128, margin=0.1)
    assert crop.box == crop_box_for_face(detect_largest_face(onset, get_detector("haar")), 0.1)
    np.testing.assert_array_equal(crop.faces[1], apply_crop(moved, crop.box, 128))
    # Because the box did not follow the head, the drift is still visible in the crop.
    a = cv2.cvtColor(crop.faces[0], cv2.COLOR_BGR2GRAY).astype(np.float32)
    b = cv2.cvtColor(crop.faces[1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    assert np.abs(a - b).mean() > 1.0


# ---------------------------------------------------------------- features


def test_features_shape_dtype_finite_and_bounded():
    onset, apex = expression_pair(MOUTH)
    features = clip_features(onset, apex, PreprocessConfig())
    assert features.shape == (3, 28, 28)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert (
        np.abs(features[:2]).max() <= 1.0 and 0.0 <= features[2].min() and features[2].max() <= 1.0
    )
    # Normalised per clip: the strongest motion reaches the top of the range.
    assert np.hypot(features[0], features[1]).max() > 0.9


@pytest.mark.parametrize("region, moving_half", [(MOUTH, "bottom"), (BROWS, "top")])
def test_local_motion_shows_in_the_right_half(region, moving_half):
    onset, apex = expression_pair(region)
    top, bottom = energy_halves(clip_features(onset, apex, PreprocessConfig()))
    moving, still = (bottom, top) if moving_half == "bottom" else (top, bottom)
    assert moving > 3 * still


def test_motion_direction_and_location_match_the_displacement():
    # The mouth is pushed UP by 2 px: v < 0 around the mouth, in the lower middle.
    onset, apex = expression_pair(MOUTH)
    features = clip_features(onset, apex, PreprocessConfig(normalization="none"))
    u, v = features[0], features[1]
    row, col = np.unravel_index(np.argmax(np.hypot(u, v)), u.shape)
    assert row >= 14 and 9 <= col <= 19
    assert v[row, col] < 0 and abs(v[row, col]) > 3 * abs(u[row, col])
    # Raw units: 2 px on a ~151 px crop box -> ~1.7 px at 128 -> ~0.37 px on the 28 grid.
    assert 0.2 < -v[row, col] < 0.5


def test_two_classes_differ_in_expected_regions():
    brows = clip_features(*expression_pair(BROWS, seed=3), PreprocessConfig())
    mouth = clip_features(*expression_pair(MOUTH, seed=3), PreprocessConfig())
    e_brows = (brows**2).sum(0)
    e_mouth = (mouth**2).sum(0)
    brow_band, mouth_band = slice(5, 12), slice(17, 24)
    assert e_brows[brow_band].sum() > 3 * e_mouth[brow_band].sum()
    assert e_mouth[mouth_band].sum() > 3 * e_brows[mouth_band].sum()


def test_global_head_motion_is_removed():
    onset, apex = expression_pair(MOUTH)
    apex = shift(apex, 1.5, 0.8)
    result = compute_clip_features(onset, apex, PreprocessConfig())
    box_side = result.metadata["crop_box"][2] - result.metadata["crop_box"][0]
    gx, gy = result.metadata["global_motion_px"]
    assert gx == pytest.approx(1.5 * 128 / box_side, abs=0.2)
    assert gy == pytest.approx(0.8 * 128 / box_side, abs=0.2)
    top, bottom = energy_halves(result.features)
    assert bottom > 3 * top


def test_identical_frames_give_zero_features_not_amplified_noise():
    # The divisor floor keeps a motionless clip at ~0 instead of dividing by ~0.
    face = draw_face(160)
    result = compute_clip_features(face, face, PreprocessConfig())
    assert np.isfinite(result.features).all()
    assert np.abs(result.features).max() < 0.05
    assert result.metadata["flow_scale"] == pytest.approx(PreprocessConfig().min_flow_px * 28 / 128)
    assert result.metadata["strain_scale"] == pytest.approx(PreprocessConfig().min_strain)


def test_sensor_noise_is_small_against_a_micro_expression():
    raw = PreprocessConfig(normalization="none")
    face = draw_face(160)
    still = clip_features(add_noise(face, 1.0, 1), add_noise(face, 1.0, 2), raw)
    moving = clip_features(*expression_pair(MOUTH), raw)
    noise = np.percentile(np.hypot(still[0], still[1]), 99)
    assert noise < np.hypot(moving[0], moving[1]).max() / 3


def test_skip_detection_uses_frames_as_face_crops():
    onset, apex = expression_pair(MOUTH)
    result = compute_clip_features(
        onset[16:144, 16:144], apex[16:144, 16:144], PreprocessConfig(skip_detection=True)
    )
    assert result.metadata["face_box"] is None
    assert result.features.shape == (3, 28, 28)
    top, bottom = energy_halves(result.features)
    assert bottom > 3 * top


def test_no_face_raises_clip_error():
    gray = np.full((160, 160, 3), 128, np.uint8)
    with pytest.raises(FaceNotFound, match="no face"):
        clip_features(gray, gray, PreprocessConfig())


def test_flow_features_on_gray_crops_with_farneback():
    onset, apex = expression_pair(MOUTH)

    def to_gray(im):
        return cv2.cvtColor(
            cv2.resize(im, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )  # noqa: E731

    result = flow_features(to_gray(onset), to_gray(apex), PreprocessConfig(flow_method="farneback"))
    top, bottom = energy_halves(result.features)
    assert bottom > 3 * top


def test_feature_size_other_than_28():
    onset, apex = expression_pair(MOUTH)
    assert clip_features(onset, apex, PreprocessConfig(feature_size=32)).shape == (3, 32, 32)


def test_metadata_records_every_setting():
    onset, apex = expression_pair(MOUTH)
    config = PreprocessConfig()
    meta = compute_clip_features(onset, apex, config).metadata
    assert meta["flow"]["method"] == "dis" and meta["flow"]["params"]["finest_scale"] == 0
    assert meta["detector"]["name"] == "haar"
    assert meta["detector"]["cascade"] == "haarcascade_frontalface_default.xml"
    assert meta["face_size"] == 128 and meta["feature_size"] == 28
    assert meta["config"] == config.to_dict()
    assert meta["config_fingerprint"] == config.fingerprint()
    assert meta["feature_version"] == FEATURE_VERSION
    assert meta["frame_size"] == [160, 160]
    assert len(meta["face_box"]) == 4 and len(meta["crop_box"]) == 4
    assert meta["flow_scale"] > 0 and meta["strain_scale"] > 0
    assert record_metadata(config, extra=1)["extra"] == 1


def test_fingerprint_is_stable_and_covers_every_field():
    base = PreprocessConfig()
    assert base.fingerprint() == PreprocessConfig().fingerprint()
    assert len(base.fingerprint()) == 32
    variants = [
        PreprocessConfig(face_size=112),
        PreprocessConfig(feature_size=32),
        PreprocessConfig(flow_method="farneback"),
        PreprocessConfig(skip_detection=True),
        PreprocessConfig(margin=0.2),
        PreprocessConfig(remove_global_motion=False),
        PreprocessConfig(normalization="none"),
        PreprocessConfig(scale_percentile=95.0),
        PreprocessConfig(min_flow_px=0.3),
        PreprocessConfig(min_strain=0.05),
        PreprocessConfig(alignment="eyes"),
        PreprocessConfig(detector_model="x.onnx"),
        PreprocessConfig(magnification_alpha=4.0),
        PreprocessConfig(sequence_length=16),
        PreprocessConfig(spotting_percentile=90.0),
    ]
    prints = {v.fingerprint() for v in variants}
    assert len(prints) == len(variants) and base.fingerprint() not in prints


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flow_method": "lucas"}, "flow_method"),
        ({"detector": "nope"}, "detector"),
        ({"feature_size": 200}, "feature_size"),
        ({"margin": -0.1}, "margin"),
        ({"normalization": "zscore"}, "normalization"),
    ],
)
def test_invalid_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)


def test_onset_and_apex_of_different_sizes_is_a_clip_error():
    with pytest.raises(ClipError, match="differ in size"):
        clip_features(draw_face(160), draw_face(128), PreprocessConfig())


def test_pipeline_on_cohort_generator_faces_when_available():
    """Uses the synthetic cohort renderer (simulations/synthetic) if it exists."""
    face_render = pytest.importorskip("simulations.synthetic.face_render")
    identity_mod = pytest.importorskip("simulations.synthetic.identity")
    if not hasattr(face_render, "render_face") or not hasattr(identity_mod, "sample_identity"):
        pytest.skip("synthetic face renderer not available")
    try:
        identity = identity_mod.sample_identity(np.random.default_rng(0))
        frame, geometry = face_render.render_face(identity)
    except Exception as exc:  # the generator is developed separately
        pytest.skip(f"synthetic face renderer not usable: {exc}")
    box = detect_largest_face(frame, get_detector("haar"))
    cx, cy = geometry.center
    assert box.x < cx < box.x + box.w and box.y < cy < box.y + box.h
    apex = warp_local(frame, cx, cy + 0.3 * box.h, 10, 0.0, -2.0)
    top, bottom = energy_halves(clip_features(frame, apex, PreprocessConfig()))
    assert bottom > 2 * top


# ---- optional steps: YuNet, magnification, fixed-length sequences -----------


def test_yunet_needs_a_model_file_and_never_downloads(tmp_path):
    with pytest.raises(ValueError, match="needs the path of a YuNet .onnx model"):
        get_detector("yunet")
    with pytest.raises(
        FileNotFoundError, match=r"YuNet model .*missing.onnx not found.*never downloads"
    ):
        get_detector("yunet", model_path=tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="YuNet model"):
        PreprocessConfig(
            detector="yunet", detector_model=str(tmp_path / "missing.onnx")
        ).make_detector()


def test_magnification_amplifies_motion_and_keeps_the_onset():
    from client.preprocessing.magnification import MagnificationConfig, magnify

    face = cv2.cvtColor(draw_face(128, seed=3), cv2.COLOR_BGR2GRAY)
    frames = [cv2.cvtColor(warp_local(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), 64, 90, 10, 0.0, -0.1 * t),
                           cv2.COLOR_BGR2GRAY) for t in range(10)]  # fmt: skip
    plain = magnify(frames, MagnificationConfig(alpha=0.0))
    boosted = magnify(frames, MagnificationConfig(alpha=8.0))
    assert np.array_equal(boosted[0], frames[0]) and plain == frames
    change = [np.abs(f[-1].astype(float) - f[0].astype(float)).sum() for f in (plain, boosted)]
    assert change[1] > 2 * change[0]
    with pytest.raises(ValueError, match="alpha"):
        MagnificationConfig(alpha=-1)


def test_fixed_length_flow_sequence():
    from client.preprocessing.features import compute_sequence_features
    from client.preprocessing.temporal_interpolation import resample_frames

    ramp = [np.full((4, 4), v, np.uint8) for v in (0, 100, 200)]
    assert [int(f[0, 0]) for f in resample_frames(ramp, 5)] == [0, 50, 100, 150, 200]
    onset, apex = expression_pair(MOUTH)
    frames = [onset, onset, apex, apex, onset]
    result = compute_sequence_features(frames, PreprocessConfig(sequence_length=16), apex_index=2)
    assert result.sequence.shape == (16, 2, 28, 28) and result.sequence.dtype == np.float32
    assert np.abs(result.sequence[0]).max() == 0.0  # the onset against itself
    assert np.abs(result.sequence[8]).max() > 0.1  # the held apex
    assert result.metadata["sequence"]["length"] == 16
    with pytest.raises(ValueError, match="sequence_length"):
        PreprocessConfig(sequence_length=1)
