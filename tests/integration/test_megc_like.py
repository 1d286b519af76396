"""The megc-like generator: deterministic, shaped like the composite, read like any release."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from client.datasets.registry import COMPOSITE, detect_kind, read_dataset
from fedmer.cli import main
from simulations.synthetic.face_render import FaceRenderer
from simulations.synthetic.megc_like import (
    CASME2,
    GROUND_TRUTH,
    SAMM,
    SMIC,
    MegcLikeSpec,
    generate_megc_like,
)
from simulations.synthetic.megc_like.people import allocate_clips, rng_for, sample_person
from simulations.synthetic.megc_like.plan import plan_megc_clip

# The three labs at a few subjects each: same layouts, same knobs, test-sized.
SMALL = MegcLikeSpec(
    seed=3,
    labs=(
        dataclasses.replace(
            CASME2, subjects=2, clips={"negative": 3, "positive": 2, "surprise": 1}
        ),
        dataclasses.replace(SAMM, subjects=2, clips={"negative": 2, "positive": 1, "surprise": 1}),
        dataclasses.replace(SMIC, subjects=2, clips={"negative": 1, "positive": 2, "surprise": 2}),
    ),
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    return generate_megc_like(tmp_path_factory.mktemp("megc") / "cohort", SMALL, workers=1)


def test_the_same_seed_gives_byte_identical_files_whatever_the_workers(small_cohort, tmp_path):
    again = generate_megc_like(tmp_path / "again", SMALL, workers=2)
    assert _digest(again) == _digest(small_cohort)
    other = generate_megc_like(tmp_path / "other", dataclasses.replace(SMALL, seed=4), workers=1)
    assert _digest(other) != _digest(small_cohort)  # the negative: the seed matters


def test_each_lab_is_read_by_its_own_reader_and_the_root_as_a_composite(small_cohort):
    assert detect_kind(small_cohort) == COMPOSITE
    for folder, kind in (("CASME2", "casme2"), ("SAMM", "samm"), ("SMIC", "smic")):
        assert detect_kind(small_cohort / folder) == kind
    kind, table = read_dataset(small_cohort)
    assert kind == COMPOSITE and not table.skipped
    assert Counter(c.dataset for c in table.clips) == {"casme2": 6, "samm": 4, "smic": 5}
    assert len({c.subject for c in table.clips}) == 6  # namespaced per dataset
    smic = [c for c in table.clips if c.dataset == "smic"]
    assert all(c.apex is None for c in smic)  # SMIC-HS ships no apex
    truth = list(csv.DictReader(open(small_cohort / GROUND_TRUTH)))
    assert len(truth) == 15 and {r["dataset"] for r in truth} == {"casme2", "samm", "smic"}


@pytest.fixture(scope="module")
def prepared(small_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("megc-prepared")
    assert main(["prepare", str(small_cohort), "--out", str(out), "--no-progress"]) == 0
    return out


def test_prepare_auto_and_simulate_read_it_like_any_release(prepared, tmp_path):
    out = prepared
    report = json.loads((out / "prepare.json").read_text())
    assert report["kind"] == COMPOSITE and report["ready"] == 15, report.get("skipped")
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert Counter(r["dataset"] for r in rows) == {"casme2": 6, "samm": 4, "smic": 5}
    env = dict(os.environ, FEDMER_CACHE=str(tmp_path / "cache"), FLWR_DISABLE_UPDATE_CHECK="1")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "simulate", "--data", str(out / "manifest.csv"),
         "--num-server-rounds", "1", "--num-heldout-subjects", "1", "--silos", "0",
         "--pretrain-subjects", "0", "--transport", "in-process", "--out-dir", str(run)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert len(results["rounds"]) == 1
    assert sorted(results["devices"].values()).count("train") == 5


def test_the_default_labs_have_the_composite_counts_and_uneven_subjects():
    spec = MegcLikeSpec()
    assert (spec.num_clips, spec.num_subjects) == (442, 68)
    for index, lab in enumerate(spec.labs):
        counts = allocate_clips(spec, index, lab)
        assert len(counts) == lab.subjects
        for label, total in lab.clips.items():
            assert sum(c[label] for c in counts) == total
        per_subject = [sum(c.values()) for c in counts]
        assert min(per_subject) >= 1 and max(per_subject) <= spec.max_clips_per_subject
        assert max(per_subject) >= 4 * min(per_subject)  # uneven, as in the releases


def _plans(spec: MegcLikeSpec, label: str, n: int):
    person = sample_person(spec, 0, 0)
    layout = FaceRenderer(person.identity, spec.canvas, spec.face_width).layout
    return [
        plan_megc_clip(rng_for(spec, 0, 0, 9, i), spec, person, layout, label, 200)
        for i in range(n)
    ]


def test_amplitudes_and_label_disagreement_follow_the_knobs():
    plans = _plans(MegcLikeSpec(), "negative", 400)
    amplitudes = np.array([p.amplitude_px for p in plans])
    assert amplitudes.min() >= 0.2 and amplitudes.max() <= 2.0
    assert np.median(amplitudes) == pytest.approx(1.1, rel=0.15)  # uniform
    faint = _plans(MegcLikeSpec(apex_distribution="log-uniform"), "negative", 400)
    assert np.median([p.amplitude_px for p in faint]) == pytest.approx(np.sqrt(0.4), rel=0.2)
    disagree = np.mean([not p.agrees for p in plans])
    assert 0.015 < disagree < 0.07  # the default 0.04
    assert all(p.agrees for p in _plans(MegcLikeSpec(label_disagreement=0.0), "negative", 100))
    # A disagreeing clip shows another class's action units.
    shown = {p.action_units for p in plans if not p.agrees}
    assert shown and shown.isdisjoint({"4", "14", "15", "17", "4+14", "4+15", "4+17", "15+17"})


def test_cross_silo_loso_keeps_the_test_subjects_lab_training_on_its_other_subjects(
    prepared, tmp_path
):
    from common.run_config import RunConfig
    from simulations.device_folders import read_device_index
    from simulations.protocols.data import load_protocol_data
    from simulations.protocols.runner import ProtocolSpec, run_protocol

    manifest = prepared / "manifest.csv"
    data = load_protocol_data(manifest)
    run = RunConfig(
        num_server_rounds=1,
        partition="lab",
        silos=0,
        pretrain_subjects=0,
        data_manifest=str(manifest),
    )
    spec = ProtocolSpec(protocol="composite", mode="federated", run=run, folds=2)
    result = run_protocol(data, spec, manifest, tmp_path / "loso")
    assert result["num_folds"] == 2 and set(result["per_dataset"]) == {"casme2", "samm", "smic"}
    for fold in result["folds"]:
        devices = read_device_index(Path(fold["folder"]) / "devices")
        labs = [d for d in devices if d["role"] == "train"]
        held = {str(d["subject"]) for d in devices if d["role"] == "heldout"}
        assert held == set(fold["test_subjects"])
        trained = {str(s) for d in labs for s in d["subjects"]}
        assert not held & trained and len(trained) == 6 - len(held)
        # One training device per lab that still has training subjects, holding only those.
        datasets = [{str(s).split("/")[0] for s in d["subjects"]} for d in labs]
        assert all(len(ds) == 1 for ds in datasets)
        assert len(labs) == len({s.split("/")[0] for s in trained})

    # The default partition leaves the protocol as it was: one device per training subject.
    plain = ProtocolSpec(
        protocol="composite",
        mode="federated",
        run=run.replace(partition="round-robin", silos=3),
        folds=2,
    )
    folder = Path(run_protocol(data, plain, manifest, tmp_path / "plain")["folds"][0]["folder"])
    devices = read_device_index(folder / "devices")
    training = [d for d in devices if d["role"] == "train"]
    assert all(len(d["subjects"]) == 1 for d in training)
    assert len(training) + sum(d["role"] == "heldout" for d in devices) == 6


def test_every_knob_is_documented_with_its_default():
    doc = (Path(__file__).parents[2] / "docs" / "megc-like.md").read_text()
    spec = MegcLikeSpec()
    for f in dataclasses.fields(MegcLikeSpec):
        if f.name == "labs":
            continue
        value = getattr(spec, f.name)
        shown = ",".join(str(x) for x in value) if isinstance(value, tuple) else str(value)
        assert f"| `--{f.name.replace('_', '-')}` | {shown} |" in doc, f.name


def test_the_command_names_a_bad_knob_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["megc-like", str(out), "--apex-px", "2,1", "--no-progress"]) == 2
    assert "apex_px must be 0 < low <= high, got (2.0, 1.0)" in capsys.readouterr().out
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["megc-like", str(out), "--apex-px", "one"])
    assert "expected LOW,HIGH, got 'one'" in capsys.readouterr().err
