"""Apex spotting on the synthetic cohort with the true apex hidden."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from client.datasets.manifest import read_manifest
from client.feature_cache import FeatureCache
from client.prepare import prepare_clips
from client.preprocessing.apex_spotting import spot_apex
from client.preprocessing.features import PreprocessConfig
from simulations.synthetic import CohortSpec, generate_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    spec = CohortSpec(num_subjects=4, clips_per_class=2, seed=3)
    return read_manifest(generate_cohort(tmp_path_factory.mktemp("cohort"), spec, workers=2)).clips


def test_spotted_apex_within_3_frames_for_80_percent(cohort, tmp_path):
    hidden = [dataclasses.replace(c, apex=None) for c in cohort]
    result = prepare_clips(hidden, PreprocessConfig(), FeatureCache(tmp_path / "cache"), workers=2)
    assert len(result.ready) == len(cohort) and not result.skipped
    cache = FeatureCache(tmp_path / "cache")
    truth = {c.clip_id: c.apex for c in cohort}
    errors = []
    for prepared in result.ready:
        _, meta = cache.get_entry(prepared.record, PreprocessConfig())
        assert (
            meta["apex_source"] == "spotted"
            and meta["apex_spotting"]["method"] == "peak_flow_from_onset"
        )
        errors.append(abs(meta["apex_spotting"]["apex"] - truth[prepared.record.clip_id]))
    hit_rate = np.mean(np.array(errors) <= 3)
    print(f"apex spotting: {hit_rate:.0%} within 3 frames, errors {sorted(errors)}")
    assert hit_rate >= 0.8


def test_spotting_picks_the_frame_of_peak_motion():
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    base = np.kron(base[::4, ::4], np.ones((4, 4), np.uint8))  # smooth enough to track
    frames = []
    for t in range(12):
        shift = 3 - abs(t - 7) * 0.6 if abs(t - 7) < 5 else 0.0
        patch = base.copy()
        m = np.float32([[1, 0, 0], [0, 1, shift]])
        import cv2

        moved = cv2.warpAffine(base, m, (64, 64), borderMode=cv2.BORDER_REPLICATE)
        patch[16:48, 16:48] = moved[16:48, 16:48]  # local motion only, like an AU
        frames.append(patch)
    assert abs(spot_apex(frames).index - 7) <= 1
    with pytest.raises(ValueError, match="at least the onset and one more frame"):
        spot_apex(frames[:1])
