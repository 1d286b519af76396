"""`fedmer prepare`: dataset as shipped -> prepared cache + manifest, then `fedmer simulate` on it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client.datasets.manifest import read_manifest
from fedmer.cli import main
from simulations.synthetic import CohortSpec, write_casme2_layout

SPEC = CohortSpec(num_subjects=4, clips_per_class=2, seed=5)


@pytest.fixture(scope="module")
def casme2_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("casme2")
    write_casme2_layout(root, SPEC)
    return root


@pytest.fixture(scope="module")
def prepared(casme2_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    code = main(["prepare", str(casme2_root), "--out", str(out), "--workers", "2", "--no-progress"])
    return code, out


def test_prepare_writes_manifest_report_and_cache(prepared, capsys):
    code, out = prepared
    assert code == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 4 * 3 * 2
    assert list(rows[0])[:8] == [
        "subject",
        "clip",
        "onset",
        "apex",
        "offset",
        "label",
        "dataset",
        "fps",
    ]
    assert {r["label"] for r in rows} == {"negative", "positive", "surprise"}  # composite labels
    assert {r["dataset"] for r in rows} == {"casme2"}
    report = json.loads((out / "prepare.json").read_text())
    assert report["kind"] == "casme2" and report["scheme"] == "composite" and report["ready"] == 24
    assert report["config"]["flow_method"] == "dis" and report["config"]["alignment"] == "none"
    entries = list((out / "cache" / "features").rglob("*.json"))
    assert len(entries) == 24
    meta = json.loads(entries[0].read_text())
    assert meta["config"] == report["config"] and meta["flow"]["method"] == "dis"


def test_training_can_find_the_prepared_settings_and_cache(prepared):
    from client.prepare import load_prepared, prepared_run_for

    _, out = prepared
    run = prepared_run_for(out / "manifest.csv")
    assert run is not None and run.cache.root == out / "cache"
    loaded = load_prepared(read_manifest(out / "manifest.csv").clips, run.config, run.cache)
    assert len(loaded.ready) == 24 and loaded.computed == 0  # no recomputation needed
    assert prepared_run_for(out / "elsewhere" / "manifest.csv") is None


def test_manifest_round_trip_keeps_subjects_namespaced(prepared):
    _, out = prepared
    table = read_manifest(out / "manifest.csv")
    assert table.skipped == [] and len(table.clips) == 24
    assert {c.subject for c in table.clips} == {f"casme2/sub{i:02d}" for i in range(1, 5)}
    assert all(
        c.clip_id.startswith("casme2/sub") and c.clip_id.count("/") == 2 for c in table.clips
    )


def test_rerun_resumes_from_the_cache(prepared, casme2_root, capsys):
    _, out = prepared
    # An interrupted run: some entries lost their completion marker.
    entries = sorted((out / "cache" / "features").rglob("*.json"))
    for entry in entries[:5]:
        entry.unlink()
    capsys.readouterr()
    assert (
        main(["prepare", str(casme2_root), "--out", str(out), "--workers", "2", "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "24 clip(s) ready (19 from cache, 5 computed), 0 skipped" in printed
    # The rows read from the sheet, against the rows it holds, printed and kept.
    (sheet_rows,) = json.loads((out / "prepare.json").read_text())["sheet_rows"]
    assert sheet_rows["read"] == sheet_rows["present"] == 24
    assert f"{Path(sheet_rows['sheet']).name}: 24 of 24 row(s) read" in printed


def test_native_scheme_and_errors(casme2_root, tmp_path, capsys):
    assert main(["prepare", str(casme2_root), "--kind", "casme2", "--scheme", "native",
                 "--out", str(tmp_path / "n"), "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    labels = {r["label"] for r in csv.DictReader(open(tmp_path / "n" / "manifest.csv"))}
    assert labels <= {"happiness", "disgust", "repression", "surprise"} and "happiness" in labels
    capsys.readouterr()
    # A native manifest is refused before any work, not trained on a handful of clips.
    run = tmp_path / "native-run"
    assert main(["simulate", "--data-manifest", str(tmp_path / "n" / "manifest.csv"),
                 "--out-dir", str(run)]) == 2  # fmt: skip
    said = capsys.readouterr().out
    assert "have labels outside the composite classes negative, positive, surprise" in said
    assert "'happiness' (" in said and "--scheme composite" in said and not run.exists()
    assert main(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "e")]) == 2
    assert "dataset root not found" in capsys.readouterr().out
    assert main(["prepare", str(casme2_root), "--detector", "yunet", "--detector-model", str(tmp_path / "no.onnx"),
                 "--out", str(tmp_path / "y")]) == 2  # fmt: skip
    assert "YuNet model" in capsys.readouterr().out and not (tmp_path / "y").exists()


def test_prepare_then_simulate_end_to_end(prepared, tmp_path):
    """Acceptance: prepared CASME II-layout data trains through `fedmer simulate`."""
    _, out = prepared
    env = dict(os.environ, FEDMER_CACHE=str(tmp_path / "cache"), FLWR_DISABLE_UPDATE_CHECK="1")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "simulate", "--data-manifest", str(out / "manifest.csv"),
         "--num-server-rounds", "2", "--num-heldout-subjects", "1", "--batch-size", "4", "--out-dir", str(run)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert len(results["rounds"]) == 2
    assert sorted(results["devices"].values()) == ["heldout", "train", "train", "train"]
    assert "24 clip(s) ready" in proc.stdout
