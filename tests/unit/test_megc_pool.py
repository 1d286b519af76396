"""Pooling megc-like cohorts into one population, and drawing the frontier's people from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.datasets.clip_record import ClipRecord
from client.datasets.manifest import read_manifest, write_manifest
from simulations.megc_pool import pool_manifests, pooled_subject
from simulations.person_level_frontier import pool_assignment


def _prepared(root: Path, people: dict[str, str], fingerprint: str = "f1") -> Path:
    """A prepared folder: manifest.csv of two clips per person, and its prepare.json."""
    records = []
    for subject, dataset in people.items():
        for n in (1, 2):
            source = root / "frames" / subject.replace("/", "_") / f"EP{n}"
            source.mkdir(parents=True)
            records.append(
                ClipRecord(dataset, subject, f"{subject}/EP{n}", source, 1, 2, 3, "negative", 200)
            )
    (root / "prepared").mkdir(parents=True)
    (root / "prepared" / "prepare.json").write_text(json.dumps({"config_fingerprint": fingerprint}))
    return write_manifest(root / "prepared" / "manifest.csv", records)


def test_cohorts_of_different_seeds_pool_into_distinct_people(tmp_path):
    a = _prepared(tmp_path / "a", {"casme2/sub01": "casme2", "samm/006": "samm"})
    b = _prepared(tmp_path / "b", {"casme2/sub01": "casme2", "smic/s1": "smic"})
    pooled = read_manifest(pool_manifests([a, b], tmp_path / "pool"))
    subjects = {c.subject for c in pooled.clips}
    assert subjects == {"casme2/s00-sub01", "samm/s00-006", "casme2/s01-sub01", "smic/s01-s1"}
    assert len({c.clip_id for c in pooled.clips}) == 8
    clip = next(c for c in pooled.clips if c.subject == "casme2/s01-sub01")
    assert clip.clip_id.startswith("casme2/s01-sub01/") and clip.dataset == "casme2"
    assert (tmp_path / "pool" / "prepare.json").exists()
    assert pooled_subject("bare", "s03") == "s03-bare"


def test_cohorts_prepared_differently_are_refused(tmp_path):
    a = _prepared(tmp_path / "a", {"casme2/sub01": "casme2"})
    b = _prepared(tmp_path / "b", {"casme2/sub02": "casme2"}, fingerprint="other")
    with pytest.raises(ValueError, match="prepared with different settings"):
        pool_manifests([a, b], tmp_path / "pool")


def test_the_held_out_people_are_the_same_for_every_cohort_size(tmp_path):
    people = {f"casme2/sub{i:02d}": "casme2" for i in range(12)}
    people |= {f"samm/{i:03d}": "samm" for i in range(8)}
    manifest = _prepared(tmp_path, people)
    small = pool_assignment(manifest, 4, 3, seed=0, silos=0)
    large = pool_assignment(manifest, 12, 3, seed=0, silos=0)
    held = [s for s, role in small if role == "heldout"]
    assert held == [s for s, role in large if role == "heldout"] and len(held) == 3
    train_small = [s for s, role in small if role == "train"]
    assert train_small == [s for s, role in large if role == "train"][:4]
    assert not set(held) & {s for s, _ in large if _ == "train"}
    labs = pool_assignment(manifest, 12, 3, seed=0, silos=3)
    assert [role for _, role in labs] == ["train", "train", "heldout"]
    assert all(len({people[s] for s in lab}) == 1 for lab, role in labs if role == "train")
    with pytest.raises(ValueError, match="20 people, fewer than 30 training and 3 held out"):
        pool_assignment(manifest, 30, 3, seed=0, silos=0)
