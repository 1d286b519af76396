"""Every bad-input case of issue 3: the clip is skipped with a clear reason
naming the file and what is wrong, and every other clip is still prepared."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from client.datasets.manifest import read_manifest
from client.feature_cache import FeatureCache
from client.prepare import prepare_clips
from client.preprocessing.features import PreprocessConfig
from tests.unit.test_prepare import (
    MOUTH,
    N_FRAMES,
    SIZE,
    expression_frames,
    record,
    write_folder,
    write_video,
)


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    frames = expression_frames(MOUTH, seed=4)
    good = write_folder(root / "good", frames, first=1)
    video = write_video(root / "good.avi", frames)

    cut = write_video(root / "cut.avi", frames * 4)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    corrupt = root / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())

    zero = write_folder(root / "zero", frames, first=1)
    (zero / "img7.png").write_bytes(b"")  # the apex frame (APEX 6 + first 1)
    garbage = write_folder(root / "garbage", frames, first=1)
    (garbage / "img3.png").write_bytes(b"not a png at all")  # the onset frame
    holes = write_folder(root / "holes", frames, first=1)
    (holes / "img5.png").unlink()  # between onset 3 and apex 7: not needed by the features
    no_apex = write_folder(root / "no_apex", frames, first=1)
    (no_apex / "img7.png").unlink()  # the apex frame itself
    faceless = write_folder(
        root / "faceless", [np.full((SIZE, SIZE, 3), 90, np.uint8)] * N_FRAMES, first=1
    )

    return {
        "good": record("t/good", good, 3, 7, 10),
        "good_video": record("t/good_video", video),
        "truncated_video": record("t/truncated", cut, 0, 35, 39),
        "corrupt_video": record("t/corrupt", corrupt),
        "zero_byte_image": record("t/zero", zero, 3, 7, 10),
        "unreadable_image": record("t/garbage", garbage, 3, 7, 10),
        "missing_frames": record("t/holes", holes, 3, 7, 10),
        "apex_frame_missing": record("t/no_apex", no_apex, 3, 7, 10),
        "onset_after_apex": record("t/order1", good, 8, 5, 10),
        "apex_after_offset": record("t/order2", good, 3, 10, 8),
        "apex_outside_clip": record("t/outside", video, 2, 40, 45),
        "no_face": record("t/faceless", faceless, 3, 7, 10),
    }


EXPECTED = {
    "truncated_video": ("truncated_video", "cut.avi", "video ended at frame"),
    "corrupt_video": ("unreadable_frame", "corrupt.avi", "cannot open video"),
    "zero_byte_image": ("unreadable_frame", "img7.png", "image file is empty (0 bytes)"),
    "unreadable_image": ("unreadable_frame", "img3.png", "cannot decode image"),
    "apex_frame_missing": ("missing_frames", "no_apex", "no frame for apex 7"),
    "onset_after_apex": ("bad_annotation", "good", "onset 8 > apex 5"),
    "apex_after_offset": ("bad_annotation", "good", "apex 10 > offset 8"),
    "apex_outside_clip": (
        "apex_outside_clip",
        "good.avi",
        "apex 40 is outside the clip (the clip holds frames 0-9)",
    ),
    "no_face": ("no_face", "faceless", "no face found by the haar detector"),
}


def test_each_bad_case_is_skipped_with_a_clear_reason(bad_clips, tmp_path):
    records = list(bad_clips.values())
    result = prepare_clips(records, PreprocessConfig(), FeatureCache(tmp_path / "cache"), workers=2)
    # A hole between onset and apex costs nothing: the features read only those two frames.
    assert [p.record.clip_id for p in result.ready] == ["t/good", "t/good_video", "t/holes"]
    skipped = {s.clip_id: s for s in result.skipped}
    summary = result.summary()
    for case, (category, file_name, words) in EXPECTED.items():
        entry = skipped[bad_clips[case].clip_id]
        assert entry.category == category, (case, entry)
        assert file_name in entry.reason and words in entry.reason, (case, entry.reason)
        assert entry.reason.startswith(f"clip {bad_clips[case].clip_id!r}")
        assert entry.reason in summary
    assert len(result.skipped) == len(EXPECTED)


def test_bad_clips_are_not_cached_and_good_ones_resume(bad_clips, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first = prepare_clips(list(bad_clips.values()), PreprocessConfig(), cache, workers=1)
    again = prepare_clips(list(bad_clips.values()), PreprocessConfig(), cache, workers=1)
    assert (again.cache_hits, again.computed) == (3, 0)
    assert [s.clip_id for s in again.skipped] == [s.clip_id for s in first.skipped]


def test_duplicate_clip_id_in_a_manifest(bad_clips, tmp_path):
    good = bad_clips["good"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject,clip,onset,apex,offset,label\n"
        f"S01,{good.source},3,7,10,positive\n"
        f"S01,{good.source},3,7,10,negative\n"
    )
    table = read_manifest(manifest)
    assert len(table.clips) == 1
    (dup,) = table.skipped
    assert dup.category == "duplicate"
    assert (
        dup.reason.startswith("manifest.csv row 3: duplicate clip id")
        and "(first on row 2)" in dup.reason
    )


def test_spotting_needs_every_frame_between_onset_and_offset(bad_clips, tmp_path):
    holes = dataclasses.replace(bad_clips["missing_frames"], apex=None)
    result = prepare_clips([holes], PreprocessConfig(), FeatureCache(tmp_path / "c"), workers=1)
    assert result.skipped[0].category == "missing_frames"
