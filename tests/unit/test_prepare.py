"""prepare_clips / load_prepared / FeatureCache on real video files and frame folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from client.datasets.clip_record import ClipRecord
from client.feature_cache import FeatureCache
from client.prepare import load_prepared, prepare_clips
from client.preprocessing.features import PreprocessConfig
from tests.unit.test_preprocessing import (
    BROWS,
    MOUTH,
    add_noise,
    draw_face,
    energy_halves,
    warp_local,
)

SIZE = 160
ONSET, APEX, OFFSET = 2, 6, 9
N_FRAMES = 10


def expression_frames(region: tuple[int, int], seed: int = 0, size: int = SIZE) -> list[np.ndarray]:
    """A 10-frame clip: still until ONSET, pushed up to 2 px at APEX, back by OFFSET."""
    face = draw_face(size, seed)
    frames = []
    for n in range(N_FRAMES):
        if n <= ONSET or n >= OFFSET:
            amount = 0.0
        elif n <= APEX:
            amount = (n - ONSET) / (APEX - ONSET)
        else:
            amount = (OFFSET - n) / (OFFSET - APEX)
        moved = warp_local(face, region[0], region[1], 10, 0.0, -2.0 * amount) if amount else face
        frames.append(add_noise(moved, 1.0, seed * 100 + n))
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, frames[0].shape[1::-1]
    )
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_folder(folder: Path, frames: list[np.ndarray], first: int = 1) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"img{first + i}.png"), frame)
    return folder


def record(
    clip_id: str, source: Path, onset=ONSET, apex=APEX, offset=OFFSET, label="happiness"
) -> ClipRecord:
    return ClipRecord(
        "synthetic", "synthetic/S01", clip_id, source, onset, apex, offset, label, 25.0
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two good clips (video, folder) and a set of bad ones, written once."""
    root = tmp_path_factory.mktemp("clips")
    mouth_video = write_video(root / "mouth.avi", expression_frames(MOUTH, seed=1))
    # Folder numbering starts at 101: annotation numbers are the names' numbers.
    brows_folder = write_folder(root / "brows", expression_frames(BROWS, seed=2), first=101)
    gray = write_video(root / "gray.avi", [np.full((SIZE, SIZE, 3), 128, np.uint8)] * N_FRAMES)
    truncated = write_video(root / "cut.avi", expression_frames(MOUTH, seed=3) * 4)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    good = [
        record("synthetic/mouth", mouth_video),
        record(
            "synthetic/brows", brows_folder, ONSET + 101, APEX + 101, OFFSET + 101, label="surprise"
        ),
    ]
    bad = {
        "missing": record("synthetic/missing", root / "missing.avi"),
        "order": record("synthetic/order", mouth_video, onset=8, apex=3),
        "no_apex": record("synthetic/no_apex", mouth_video, apex=None),
        "no_face": record("synthetic/no_face", gray),
        "truncated": record("synthetic/truncated", truncated, onset=0, apex=35, offset=39),
        "past_end": record("synthetic/past_end", mouth_video, onset=2, apex=25, offset=30),
        "gap": record(
            "synthetic/gap", brows_folder, ONSET, APEX, OFFSET
        ),  # 2..9 absent: folder starts at 101
    }
    return good, bad


def test_good_clips_ready_bad_ones_skipped_with_reasons(clips, tmp_path):
    good, bad = clips
    records = [bad["missing"], good[0], bad["order"], bad["no_apex"], bad["no_face"], good[1],
               bad["truncated"], bad["past_end"], bad["gap"]]  # fmt: skip
    result = prepare_clips(records, PreprocessConfig(), FeatureCache(tmp_path / "cache"), workers=2)

    # The clip without an apex label gets its apex spotted instead of being skipped.
    assert [p.record.clip_id for p in result.ready] == [
        "synthetic/mouth",
        "synthetic/no_apex",
        "synthetic/brows",
    ]
    assert (result.cache_hits, result.computed) == (0, 3)
    for prepared in result.ready:
        assert prepared.features.shape == (3, 28, 28) and prepared.features.dtype == np.float32
        assert np.isfinite(prepared.features).all()
    # The mouth clip moves in the bottom half, the brows clip in the top half.
    top, bottom = energy_halves(result.ready[0].features)
    assert bottom > 3 * top
    top, bottom = energy_halves(result.ready[2].features)
    assert top > 3 * bottom
    # The clip without an apex label moves in the mouth region like its source.
    top, bottom = energy_halves(result.ready[1].features)
    assert bottom > 3 * top

    reasons = {s.clip_id: s.reason for s in result.skipped}
    categories = {s.clip_id: s.category for s in result.skipped}
    assert len(result.skipped) == 6
    assert "missing.avi: file or folder not found" in reasons["synthetic/missing"]
    assert reasons["synthetic/order"].endswith("onset 8 > apex 3")
    assert "gray.avi" in reasons["synthetic/no_face"] and "no face" in reasons["synthetic/no_face"]
    assert (
        "cut.avi" in reasons["synthetic/truncated"]
        and "apex 35 requested" in reasons["synthetic/truncated"]
    )
    assert (
        "apex 25 is outside the clip (the clip holds frames 0-9)" in reasons["synthetic/past_end"]
    )
    assert "apex 6 is outside the clip (the clip holds frames 101-110)" in reasons["synthetic/gap"]
    assert categories == {
        "synthetic/missing": "missing_file",
        "synthetic/order": "bad_annotation",
        "synthetic/no_face": "no_face",
        "synthetic/truncated": "truncated_video",
        "synthetic/past_end": "apex_outside_clip",
        "synthetic/gap": "apex_outside_clip",
    }
    summary = result.summary()
    assert summary.splitlines()[0] == "3 clip(s) ready (0 from cache, 3 computed), 6 skipped"
    assert "truncated video: 1" in summary and "no face: 1" in summary
    assert reasons["synthetic/no_face"] in summary


def test_second_run_loads_from_cache_without_computing(clips, tmp_path):
    good, bad = clips
    cache = FeatureCache(tmp_path / "cache")
    first = prepare_clips(good + [bad["no_face"]], PreprocessConfig(), cache, workers=1)
    assert (first.cache_hits, first.computed, len(first.skipped)) == (0, 2, 1)

    second = prepare_clips(
        good + [bad["no_face"]], PreprocessConfig(), FeatureCache(tmp_path / "cache"), workers=2
    )
    assert (second.cache_hits, second.computed) == (2, 0)
    for a, b in zip(first.ready, second.ready):
        np.testing.assert_array_equal(a.features, b.features)
    # Failed clips are not cached: they are retried (and fail again) each run.
    assert [s.clip_id for s in second.skipped] == ["synthetic/no_face"]

    loaded = load_prepared(
        good + [bad["no_apex"]], PreprocessConfig(), FeatureCache(tmp_path / "cache")
    )
    assert [p.record.clip_id for p in loaded.ready] == ["synthetic/mouth", "synthetic/brows"]
    assert loaded.cache_hits == 2 and loaded.computed == 0
    assert "not prepared with config" in loaded.skipped[0].reason


def test_cache_entries_hold_features_and_full_metadata(clips, tmp_path):
    good, _ = clips
    config = PreprocessConfig()
    cache = FeatureCache(tmp_path / "cache")
    prepare_clips(good[:1], config, cache, workers=1)
    entry = cache.get_entry(good[0], config)
    assert entry is not None
    features, meta = entry
    with np.load(next((tmp_path / "cache" / "features").rglob("*.npz"))) as data:
        np.testing.assert_array_equal(data["features"], features)
    on_disk = json.loads(next((tmp_path / "cache" / "features").rglob("*.json")).read_text())
    assert on_disk == meta
    assert meta["flow"]["method"] == "dis" and meta["detector"]["name"] == "haar"
    assert meta["face_size"] == 128 and meta["feature_size"] == 28
    assert meta["config_fingerprint"] == config.fingerprint()
    assert meta["clip"]["clip_id"] == "synthetic/mouth" and meta["clip"]["apex"] == APEX
    assert meta["clip"]["content_sha256"] == cache.content_hash(good[0].source)
    assert meta["cache_key"] == cache.key(good[0], config)
    # No temporary files are left behind.
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_partial_cache_resumes(clips, tmp_path):
    good, _ = clips
    cache_dir = tmp_path / "cache"
    prepare_clips(good[:1], PreprocessConfig(), FeatureCache(cache_dir), workers=1)
    # Simulate a run killed while writing the second clip: a stray temp file and
    # a features file whose metadata (written last) never landed.
    stray = cache_dir / "features" / "zz" / ".half.npz.123.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"partial")
    key = FeatureCache(cache_dir).key(good[1], PreprocessConfig())
    npz = cache_dir / "features" / key[:2] / f"{key}.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    npz.write_bytes(b"half-written")

    result = prepare_clips(good, PreprocessConfig(), FeatureCache(cache_dir), workers=1)
    assert (result.cache_hits, result.computed) == (1, 1)
    assert len(result.ready) == 2
    rerun = prepare_clips(good, PreprocessConfig(), FeatureCache(cache_dir), workers=1)
    assert (rerun.cache_hits, rerun.computed) == (2, 0)


def test_corrupt_cache_entry_is_recomputed(clips, tmp_path):
    good, _ = clips
    cache = FeatureCache(tmp_path / "cache")
    first = prepare_clips(good[:1], PreprocessConfig(), cache, workers=1)
    npz = next((tmp_path / "cache" / "features").rglob("*.npz"))
    npz.write_bytes(b"garbage")
    assert cache.get(good[0], PreprocessConfig()) is None
    again = prepare_clips(good[:1], PreprocessConfig(), cache, workers=1)
    assert (again.cache_hits, again.computed) == (0, 1)
    np.testing.assert_array_equal(again.ready[0].features, first.ready[0].features)


def test_changed_config_or_content_misses_the_cache(clips, tmp_path):
    good, _ = clips
    cache = FeatureCache(tmp_path / "cache")
    prepare_clips(good[:1], PreprocessConfig(), cache, workers=1)
    other = prepare_clips(good[:1], PreprocessConfig(flow_method="farneback"), cache, workers=1)
    assert (other.cache_hits, other.computed) == (0, 1)
    assert (
        cache.get_entry(good[0], PreprocessConfig(flow_method="farneback"))[1]["flow"]["method"]
        == "farneback"
    )

    # Same path, new content (re-encoded with other frames): a different key.
    video = tmp_path / "edited.avi"
    write_video(video, expression_frames(MOUTH, seed=1))
    edited = record("synthetic/edited", video)
    key_before = cache.key(edited, PreprocessConfig())
    write_video(video, expression_frames(BROWS, seed=1))
    assert FeatureCache(tmp_path / "cache").key(edited, PreprocessConfig()) != key_before


def test_content_hash_is_cached_by_size_and_mtime(clips, tmp_path):
    good, _ = clips
    cache = FeatureCache(tmp_path / "cache")
    digest = cache.content_hash(good[1].source)  # a frame folder
    stored = list((tmp_path / "cache" / "sources").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["sha256"] == digest
    # A fresh cache object (new process) reuses the stored hash: poison it to prove it is read.
    payload = json.loads(stored[0].read_text())
    payload["sha256"] = "f" * 64
    stored[0].write_text(json.dumps(payload))
    assert FeatureCache(tmp_path / "cache").content_hash(good[1].source) == "f" * 64
    # Moving the same content elsewhere gives the same hash (content, not path).
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(good[1].source, copy)
    assert FeatureCache(tmp_path / "other").content_hash(copy) == digest


def test_workers_and_in_process_give_identical_features(clips, tmp_path):
    good, _ = clips
    serial = prepare_clips(good, PreprocessConfig(), FeatureCache(tmp_path / "a"), workers=1)
    parallel = prepare_clips(
        good, PreprocessConfig(), FeatureCache(tmp_path / "b"), workers=2, progress=True
    )
    assert parallel.computed == 2
    for a, b in zip(serial.ready, parallel.ready):
        np.testing.assert_array_equal(a.features, b.features)


def test_load_prepared_does_not_compute(clips, tmp_path):
    good, _ = clips
    result = load_prepared(good, PreprocessConfig(), FeatureCache(tmp_path / "empty"))
    assert result.ready == [] and result.computed == 0
    assert all("not prepared with config" in s.reason for s in result.skipped)
    assert not (tmp_path / "empty" / "features").exists()


def test_empty_input(tmp_path):
    result = prepare_clips([], PreprocessConfig(), FeatureCache(tmp_path / "c"))
    assert result.ready == [] and result.skipped == []
    assert result.summary() == "0 clip(s) ready (0 from cache, 0 computed), 0 skipped"


def crash_on_mouth(record, config):
    """Fault injection for the pool test: a worker dying the way a decoder segfault kills it."""
    import os

    from client.prepare import _worker

    if record.clip_id == "synthetic/mouth":
        os._exit(1)
    return _worker(record, config)


def test_a_crashing_worker_only_costs_its_own_clip(clips):
    # A worker process dying cannot be produced with real data on demand, so
    # this test injects it (the only fault-injected test here).
    from client.prepare import _run_pool

    good, bad = clips
    records = [good[0], good[1], bad["no_face"]]
    outcomes = {}
    _run_pool(
        records, PreprocessConfig(), [0, 1, 2], 2, outcomes.__setitem__, worker=crash_on_mouth
    )
    assert outcomes[0][0] == "skip" and outcomes[0][1][1] == "worker_crash"
    assert "synthetic/mouth" in outcomes[0][1][0] and "crashed" in outcomes[0][1][0]
    assert outcomes[1][0] == "ok" and outcomes[1][1][0].shape == (3, 28, 28)
    assert outcomes[2][0] == "skip" and outcomes[2][1][1] == "no_face"


def test_workers_that_cannot_start_fall_back_to_in_process(clips, tmp_path):
    # A script piped to `python -` cannot be re-imported by "spawn" workers, so
    # every worker dies on start-up; the clips must still be prepared.
    import subprocess
    import sys

    good, _ = clips
    script = f"""
from pathlib import Path
from client.datasets.clip_record import ClipRecord
from client.feature_cache import FeatureCache
from client.prepare import prepare_clips
from client.preprocessing.features import PreprocessConfig
records = [ClipRecord("s", "s/1", "s/a", Path({str(good[0].source)!r}), {ONSET}, {APEX}, {OFFSET}, "x", None),
           ClipRecord("s", "s/1", "s/b", Path({str(good[1].source)!r}), {ONSET + 101}, {APEX + 101}, {OFFSET + 101}, "x", None)]
result = prepare_clips(records, PreprocessConfig(), FeatureCache(Path({str(tmp_path / "cache")!r})), workers=2)
print("RESULT", len(result.ready), result.computed, len(result.skipped))
"""
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert "RESULT 2 2 0" in done.stdout, done.stderr[-2000:]
    assert "computing 2 clip(s) in this process instead" in done.stderr


def test_flow_sequences_are_computed_and_cached(clips, tmp_path):
    good, _ = clips
    config = PreprocessConfig(sequence_length=8)
    first = prepare_clips(good, config, FeatureCache(tmp_path / "cache"), workers=1)
    again = prepare_clips(good, config, FeatureCache(tmp_path / "cache"), workers=1)
    assert again.cache_hits == 2
    for a, b in zip(first.ready, again.ready):
        assert a.sequence.shape == (8, 2, 28, 28)
        np.testing.assert_array_equal(a.sequence, b.sequence)
    assert (
        prepare_clips(good, PreprocessConfig(), FeatureCache(tmp_path / "cache"), workers=1)
        .ready[0]
        .sequence
        is None
    )
