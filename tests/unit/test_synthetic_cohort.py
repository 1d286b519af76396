"""Tests of the deterministic synthetic micro-expression cohort generator."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from simulations.synthetic import (
    ACTION_UNITS,
    CLASSES,
    MANIFEST_COLUMNS,
    CohortSpec,
    FaceRenderer,
    generate_cohort,
    render_face,
    sample_identity,
    subject_clips,
    subject_identity,
    write_casme2_layout,
)
from simulations.synthetic.action_units import au_bumps, displacement_field
from simulations.synthetic.clip import apex_displacement, render_clip
from simulations.synthetic.writer import read_video

SPEC = CohortSpec(num_subjects=3, clips_per_class=2, seed=7)
REPO = Path(__file__).resolve().parents[2]
FACE_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
EYE_CASCADE = cv2.data.haarcascades + "haarcascade_eye.xml"

# Landmark neighbourhoods used to check where the motion is.
REGIONS = {
    "brows": ("brow_l_inner", "brow_l_mid", "brow_r_inner", "brow_r_mid"),
    "corners": ("mouth_l", "mouth_r"),
    "jaw": ("lower_lip", "chin"),
}
# (region that must dominate, region it must dominate) per class.
DOMINANCE = {
    "positive": [("corners", "brows"), ("corners", "jaw")],
    "negative": [("brows", "jaw"), ("corners", "jaw")],
    "surprise": [("brows", "corners"), ("jaw", "corners")],
}


def _sha_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def _region_means(diff: np.ndarray, layout) -> dict[str, float]:
    h = int(round(0.08 * layout.unit))
    out = {}
    for region, names in REGIONS.items():
        vals = []
        for n in names:
            x, y = (int(round(v)) for v in layout.landmarks[n])
            vals.append(float(diff[y - h : y + h + 1, x - h : x + h + 1].mean()))
        out[region] = float(np.mean(vals))
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "a"
    manifest = generate_cohort(out, SPEC, workers=1)
    assert manifest == out / "manifest.csv"
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str, int], tuple]:
    """Every clip of SPEC rendered in memory, with its subject's renderer."""
    clips = {}
    for s in range(SPEC.num_subjects):
        renderer = FaceRenderer(subject_identity(SPEC, s), SPEC.canvas, SPEC.face_width)
        for c in subject_clips(SPEC, s):
            clips[(c.subject, c.label, c.index)] = (renderer, c)
    return clips


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files_regardless_of_workers(cohort, tmp_path):
    again = generate_cohort(tmp_path / "b", SPEC, workers=2)
    first, second = _sha_tree(cohort), _sha_tree(again.parent)
    assert set(first) == set(second)
    assert (
        len([k for k in first if k.endswith(".avi")])
        == SPEC.num_subjects * 3 * SPEC.clips_per_class
    )
    assert first == second


def test_different_seed_gives_different_output(cohort, tmp_path):
    other = dataclasses.replace(SPEC, seed=SPEC.seed + 1)
    generate_cohort(tmp_path / "c", other)
    a, b = _sha_tree(cohort), _sha_tree(tmp_path / "c")
    assert set(a) == set(b)  # same layout...
    videos = [k for k in a if k.endswith(".avi")]
    assert all(a[k] != b[k] for k in videos)  # ...but every clip differs
    assert a["manifest.csv"] != b["manifest.csv"]


def test_subject_is_independent_of_cohort_size():
    small = dataclasses.replace(SPEC, num_subjects=1)
    assert subject_identity(small, 0) == subject_identity(SPEC, 0)


def test_generation_is_idempotent(cohort):
    stamps = {p: p.stat().st_mtime_ns for p in cohort.rglob("*") if p.is_file()}
    assert generate_cohort(cohort, SPEC) == cohort / "manifest.csv"
    assert {p: p.stat().st_mtime_ns for p in cohort.rglob("*") if p.is_file()} == stamps


def test_changed_spec_replaces_previous_cohort(tmp_path):
    small = CohortSpec(num_subjects=2, clips_per_class=1, seed=3)
    generate_cohort(tmp_path, small)
    smaller = dataclasses.replace(small, num_subjects=1)
    generate_cohort(tmp_path, smaller)
    _, rows = _read_manifest(tmp_path / "manifest.csv")
    assert {r["subject"] for r in rows} == {"S01"}
    assert not (tmp_path / "videos" / "S02").exists()


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import simulations.synthetic, simulations.synthetic.cohort, simulations.synthetic.casme2"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        check=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- manifest and files


def test_manifest_columns_and_values(cohort):
    columns, rows = _read_manifest(cohort / "manifest.csv")
    assert (
        columns
        == list(MANIFEST_COLUMNS)
        == ["subject", "clip", "onset", "apex", "offset", "label", "dataset", "fps"]
    )
    assert len(rows) == SPEC.num_subjects * len(CLASSES) * SPEC.clips_per_class
    assert {r["subject"] for r in rows} == {"S01", "S02", "S03"}
    for label in CLASSES:
        assert sum(r["label"] == label for r in rows) == SPEC.num_subjects * SPEC.clips_per_class
    for r in rows:
        assert r["dataset"] == "synthetic" and r["fps"] == "100"
        path = cohort / r["clip"]
        assert path.suffix == ".avi" and path.is_file() and not Path(r["clip"]).is_absolute()
        onset, apex, offset = int(r["onset"]), int(r["apex"]), int(r["offset"])
        assert 0 <= onset < apex < offset
        assert offset - onset <= 50  # <= 0.5 s at 100 fps
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(100.0)
        cap.release()
        assert 50 <= n <= 150 and offset < n


def test_video_is_lossless(cohort, rendered):
    for (subject, _label, _k), (_, clip) in rendered.items():
        if subject != "S01":
            continue
        frames = read_video(cohort / "videos" / subject / f"{clip.name}.avi")
        assert frames.shape == clip.frames.shape
        assert np.array_equal(frames, clip.frames)


def test_frames_layout(tmp_path):
    spec = CohortSpec(num_subjects=1, clips_per_class=1, seed=5, clip_format="frames")
    _, rows = _read_manifest(generate_cohort(tmp_path, spec))
    clips = {c.label: c for c in subject_clips(spec, 0)}
    assert len(rows) == 3
    for r in rows:
        folder = tmp_path / r["clip"]
        assert folder.is_dir()
        numbers = sorted(int(p.stem[3:]) for p in folder.glob("img*.jpg"))
        clip = clips[r["label"]]
        assert numbers == list(range(1, clip.plan.num_frames + 1))
        # Absolute frame numbers taken from the file names.
        assert int(r["onset"]) == clip.plan.onset + 1 and int(r["apex"]) == clip.plan.apex + 1
        apex_img = cv2.imread(str(folder / f"img{r['apex']}.jpg"))
        err = np.abs(apex_img.astype(int) - clip.frames[clip.plan.apex].astype(int)).mean()
        assert err < 3.0  # JPEG at quality 95


def test_casme2_layout(tmp_path):
    from openpyxl import load_workbook

    spec = CohortSpec(num_subjects=2, clips_per_class=1, seed=4)
    sheet = write_casme2_layout(tmp_path / "casme", spec)
    assert sheet.name == "CASME2-coding-synthetic.xlsx"
    assert write_casme2_layout(tmp_path / "casme2", spec).read_bytes() == sheet.read_bytes()
    ws = load_workbook(sheet).active
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == [
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
    ]
    body = rows[1:]
    assert len(body) == 6
    emotions = {
        "positive": {"happiness"},
        "negative": {"disgust", "repression"},
        "surprise": {"surprise"},
    }
    aus = {v: k for k, v in ACTION_UNITS.items()}
    for subject, filename, onset, apex, offset, au, emotion in body:
        folder = tmp_path / "casme" / "CASME2_RAW_selected" / f"sub{subject:02d}" / filename
        numbers = sorted(int(p.stem[3:]) for p in folder.glob("img*.jpg"))
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert numbers[0] > 1  # absolute numbering, not positions
        assert numbers[0] <= onset < apex < offset <= numbers[-1]
        assert emotion in emotions[aus[au]]


# --------------------------------------------------------------------------- content


def test_haar_face_detection_on_onset_frames(cohort):
    detector = cv2.CascadeClassifier(FACE_CASCADE)
    assert not detector.empty()
    _, rows = _read_manifest(cohort / "manifest.csv")
    boxes = {
        s: FaceRenderer(subject_identity(SPEC, s), SPEC.canvas, SPEC.face_width).layout.face_box
        for s in range(SPEC.num_subjects)
    }
    hits = 0
    for r in rows:
        cap = cv2.VideoCapture(str(cohort / r["clip"]))
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(r["onset"]))
        ok, frame = cap.read()
        cap.release()
        assert ok
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        truth = boxes[int(r["subject"][1:]) - 1]
        hits += any(_iou(tuple(map(float, b)), truth) > 0.5 for b in found)
    assert hits / len(rows) >= 0.95


def test_eye_cascade_finds_true_eye_centres():
    detector = cv2.CascadeClassifier(EYE_CASCADE)
    found = total = 0
    for seed in range(12):
        img, geom = render_face(
            sample_identity(np.random.default_rng(seed)), noise_rng=np.random.default_rng(seed)
        )
        eyes = detector.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 1.1, 3)
        for cx, cy in (geom.left_eye, geom.right_eye):
            total += 1
            found += any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in eyes)
    assert found / total >= 0.8


@pytest.mark.parametrize("angle", [-20.0, 0.0, 12.5])
def test_render_face_geometry_follows_rotation(angle):
    identity = sample_identity(np.random.default_rng(11))
    img, geom = render_face(identity, angle_deg=angle)
    assert img.shape == (160, 160, 3) and img.dtype == np.uint8
    (lx, ly), (rx, ry) = geom.left_eye, geom.right_eye
    assert lx < rx
    # Counter-clockwise rotation on screen raises the right eye (y is down).
    assert math.degrees(math.atan2(-(ry - ly), rx - lx)) == pytest.approx(angle, abs=1e-6)
    _, upright = render_face(identity)
    assert math.dist(geom.left_eye, geom.right_eye) == pytest.approx(
        math.dist(upright.left_eye, upright.right_eye)
    )
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
    for cx, cy in (geom.left_eye, geom.right_eye):  # the pupil is dark
        assert gray[int(round(cy)), int(round(cx))] < 0.5 * gray.mean()
    x, y, w, h = geom.face_box
    assert (x + w / 2, y + h / 2) == pytest.approx(geom.center)


def test_identities_differ_and_stay_plausible():
    ids = [sample_identity(np.random.default_rng(s)) for s in range(40)]
    assert len({(i.eye_sep, i.face_aspect, i.skin) for i in ids}) == 40
    for i in ids:
        assert 0.38 <= i.eye_sep <= 0.5 and 1.2 <= i.face_aspect <= 1.5
        assert i.brow_dy > 0 and i.eye_sep / 2 > i.eye_w / 2  # brows above eyes, eyes apart
        assert 0 < i.nose_dy < i.mouth_dy < 0.6
        assert 0 < i.jitter_px <= 0.5 and 0 < i.noise_sigma < 3
        assert sum(i.background) < sum(i.skin)  # darker background


def test_clip_timing_and_amplitude(rendered):
    blink_labels = set()
    for renderer, clip in rendered.values():
        p = clip.plan
        assert 50 <= p.num_frames <= 70 and len(clip.frames) == p.num_frames
        assert 15 <= p.offset - p.onset <= 40
        prof = p.profile()
        assert (
            prof[p.onset] == 0
            and prof[p.apex] == pytest.approx(1)
            and prof[p.offset] == pytest.approx(0)
        )
        assert np.all(np.diff(prof[p.onset : p.apex + 1]) > 0) and np.all(
            np.diff(prof[p.apex : p.offset + 1]) < 0
        )
        assert np.all(prof[: p.onset] == 0) and np.all(prof[p.offset :] == 0)
        field = apex_displacement(renderer, p)
        assert 1.5 <= np.linalg.norm(field, axis=2).max() <= 3.0 + 1e-4
        assert np.abs(np.asarray(p.jitter)).max() <= 1.0
        if p.eyelid_closure().max() > 0.5:
            blink_labels.add(clip.label)
    assert len(blink_labels) >= 2  # blinks occur regardless of class


@pytest.mark.parametrize("label", CLASSES)
def test_displacement_field_is_local_and_points_the_right_way(label):
    renderer = FaceRenderer(sample_identity(np.random.default_rng(2)))
    lay = renderer.layout
    field = displacement_field(au_bumps(label, lay, np.random.default_rng(0)), lay.canvas, 2.0)
    mag = np.linalg.norm(field, axis=2)
    assert mag.max() == pytest.approx(2.0, rel=1e-5)

    def at(name):
        x, y = lay.landmarks[name]
        return field[int(round(y)), int(round(x))]

    # Far from every AU (nose tip, eye centres) nothing moves.
    for name in ("nose_tip", "eye_l", "eye_r"):
        assert np.linalg.norm(at(name)) < 0.25 * 2.0
    if label == "positive":
        assert at("mouth_l")[0] < 0 and at("mouth_l")[1] < 0  # outward (left) and up
        assert at("mouth_r")[0] > 0 and at("mouth_r")[1] < 0
        assert np.linalg.norm(at("brow_l_inner")) < 0.01
    elif label == "negative":
        assert at("brow_l_inner")[0] > 0 and at("brow_l_inner")[1] > 0  # together and down
        assert at("brow_r_inner")[0] < 0 and at("brow_r_inner")[1] > 0
        assert at("mouth_l")[1] > 0 and at("mouth_r")[1] > 0  # corners down
    else:
        for name in ("brow_l_inner", "brow_l_outer", "brow_r_inner", "brow_r_outer"):
            assert at(name)[1] < 0  # brows up
        assert at("lower_lip")[1] > 0 and at("chin")[1] > 0  # jaw drops
        assert np.linalg.norm(at("upper_lip")) < np.linalg.norm(at("lower_lip"))


def test_apex_differs_from_onset_inside_the_au_region(cohort, rendered):
    # Without head jitter the class's AU region must dominate in every clip...
    for renderer, clip in rendered.values():
        p = clip.plan
        still = dataclasses.replace(p, jitter=((0.0, 0.0),) * p.num_frames, blinks=())
        frames = render_clip(renderer, still).astype(np.float32).mean(axis=3)
        means = _region_means(np.abs(frames[p.apex] - frames[p.onset]), renderer.layout)
        for strong, weak in DOMINANCE[clip.label]:
            assert means[strong] > 1.5 * means[weak], (clip.name, means)
    # ...and in the written videos (with jitter and noise) on average per
    # class; clips whose onset or apex falls in a distractor blink are left out.
    per_class: dict[str, list[dict[str, float]]] = {c: [] for c in CLASSES}
    for renderer, clip in rendered.values():
        p = clip.plan
        closure = p.eyelid_closure()
        if closure[p.onset] > 0 or closure[p.apex] > 0:
            continue
        frames = (
            read_video(cohort / "videos" / clip.subject / f"{clip.name}.avi")
            .astype(np.float32)
            .mean(axis=3)
        )
        per_class[clip.label].append(
            _region_means(np.abs(frames[p.apex] - frames[p.onset]), renderer.layout)
        )
    for label, items in per_class.items():
        assert len(items) >= 3
        avg = {r: float(np.mean([m[r] for m in items])) for r in REGIONS}
        for strong, weak in DOMINANCE[label]:
            assert avg[strong] > 1.2 * avg[weak], (label, avg)


def test_optical_flow_recovers_the_movement(rendered):
    """Sub-pixel motion is real: Farneback flow onset->apex follows the ground truth."""
    for renderer, clip in rendered.values():
        if clip.subject != "S01":
            continue
        p = clip.plan
        onset, apex = (cv2.cvtColor(clip.frames[i], cv2.COLOR_BGR2GRAY) for i in (p.onset, p.apex))
        flow = cv2.calcOpticalFlowFarneback(onset, apex, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flow -= np.subtract(p.jitter[p.apex], p.jitter[p.onset]).astype(
            np.float32
        )  # known head motion
        truth = apex_displacement(renderer, p)
        tmag = np.linalg.norm(truth, axis=2)
        inside = tmag > 0.5 * p.amplitude_px
        fmag = np.linalg.norm(flow, axis=2)
        cos = (flow * truth).sum(axis=2)[inside] / (fmag[inside] * tmag[inside] + 1e-6)
        assert cos.mean() > 0.9, clip.name
        assert fmag[inside].mean() > 3 * fmag[tmag < 0.02 * p.amplitude_px].mean(), clip.name
