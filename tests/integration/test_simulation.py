"""Integration: `fedmer simulate` through Flower's simulation engine, end to end.

Real parts only: the synthetic cohort is written as video files, preprocessed
with OpenCV, trained with Opacus on 3 simulated devices by Flower, and the
outputs are checked by value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from opacus.accountants import RDPAccountant

from common.models import build_model
from tests.independent_accountant import rdp_epsilon
from tests.scenarios import CLIP_LEVEL_FLAGS

ROUNDS = 3


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    env = dict(os.environ, FEDMER_CACHE=str(root / "cache"), FLWR_DISABLE_UPDATE_CHECK="1")
    out = root / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedmer.cli",
            "simulate",
            *CLIP_LEVEL_FLAGS,
            "--cohort-subjects",
            "4",
            "--num-heldout-subjects",
            "1",
            "--cohort-clips-per-class",
            "3",
            "--num-server-rounds",
            str(ROUNDS),
            "--batch-size",
            "4",
            "--out-dir",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout, json.loads((out / "results.json").read_text())


def test_prints_one_progress_line_per_round(simulated_run):
    _, stdout, _ = simulated_run
    lines = [l for l in stdout.splitlines() if l.startswith("[fedmer] round")]
    assert len(lines) == ROUNDS
    for r, line in enumerate(lines, start=1):
        assert f"round  {r}/{ROUNDS}" in line
        assert "UF1" in line and "UAR" in line and "ε" in line


def test_three_devices_train_and_one_evaluates(simulated_run):
    _, _, results = simulated_run
    assert sorted(results["devices"].values()) == ["heldout", "train", "train", "train"]
    for entry in results["rounds"]:
        assert len(entry["trained"]) == 3 and not entry["failed"]


def test_results_contract(simulated_run):
    _, _, results = simulated_run
    assert [r["round"] for r in results["rounds"]] == list(range(1, ROUNDS + 1))
    for entry in results["rounds"]:
        assert set(entry) >= {"round", "uf1", "uar", "accuracy", "epsilon"}
        assert 0.0 <= entry["uf1"] <= 1.0 and 0.0 <= entry["uar"] <= 1.0
    final = results["final"]
    # The held-out subject has 3 clips per class; its counts are released with
    # Gaussian noise, so the pooled confusion covers about 9 clips.
    [noise] = final_noise = list(results["rounds"][-1]["heldout_noise_std"].values())
    assert noise > 0 and final_noise
    assert abs(sum(map(sum, final["confusion"])) - 9) <= 9 * 3 * noise
    assert final["uf1"] == results["rounds"][-1]["uf1"]
    assert results["config"]["num-server-rounds"] == ROUNDS
    for record in results["privacy"]["devices"].values():
        assert set(record) >= {"noise_multiplier", "sample_rate", "steps", "delta", "epsilon"}


def test_epsilon_is_cumulative_and_matches_a_fresh_accountant(simulated_run):
    _, _, results = simulated_run
    eps = [r["epsilon"] for r in results["rounds"]]
    assert all(a < b for a, b in zip(eps, eps[1:])), eps
    devices = results["privacy"]["devices"].values()
    for record in devices:
        history = [(record["noise_multiplier"], record["sample_rate"], record["steps"])]
        fresh = RDPAccountant()
        fresh.history = history
        assert record["epsilon"] == pytest.approx(fresh.get_epsilon(record["delta"]), rel=1e-9)
        # A second, unrelated implementation agrees to within its coarser order grid.
        assert record["epsilon"] == pytest.approx(rdp_epsilon(history, record["delta"]), rel=1e-2)
    assert eps[-1] == pytest.approx(max(d["epsilon"] for d in devices))
    # sigma was calibrated once for all planned rounds: the target is met, not exceeded.
    assert 7.5 < eps[-1] <= 8.0


def test_final_model_and_plot_are_written(simulated_run):
    out, _, _ = simulated_run
    model = build_model("ststnet")
    model.load_state_dict(torch.load(out / "final_model.pt"))
    assert (out / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_fit_the_one_schema_and_devices_keep_their_own_ledgers(simulated_run):
    from common.results_schema import validate_results

    out, _, results = simulated_run
    validate_results(results)
    ledgers = sorted((out / "devices").glob("partition-*/state/privacy_ledger.jsonl"))
    # Each device wrote its ledger in its own materialized state folder: the
    # 3 training devices their DP-SGD rounds, the held-out one its releases.
    assert len(ledgers) == 4
    for ledger in ledgers:
        assert len(ledger.read_text().splitlines()) == ROUNDS
    assert results["privacy"]["private"] is True


def test_the_run_writes_a_self_contained_html_report(simulated_run):
    import base64
    from html.parser import HTMLParser

    out, stdout, results = simulated_run
    assert f"[fedmer] report: {out / 'report.html'}" in stdout

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sources: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    page = (out / "report.html").read_text()
    parser = Images()
    parser.feed(page)
    # Curves, confusion counts, per-device spend: every plot embedded, none linked.
    assert len(parser.sources) == 3
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for device in results["devices"]:
        assert device in page
    assert f"{results['final']['uf1']:.4g}" in page


def _run_model(out):
    from client.run_model import load_run_model

    return load_run_model(out)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_exported_model_gives_the_pytorch_models_logits(simulated_run, tmp_path, fmt):
    import numpy as np

    from client.model_export import export_model, max_export_error

    out, _, _ = simulated_run
    run = _run_model(out)
    assert run.recorded  # simulate recorded the devices' preprocessing
    path = export_model(run, fmt, tmp_path)
    inputs = np.random.default_rng(1).uniform(-1, 1, size=(5, *run.input_shape))
    assert max_export_error(run, path, inputs) <= 1e-5
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert manifest["model"] == "ststnet" and manifest["input_shape"] == [3, 28, 28]
    assert manifest["preprocessing_fingerprint"] == run.preprocessing.fingerprint()


def _cohort_manifest(out):
    [manifest] = (out.parent / "cache" / "cohorts").glob("*/manifest.csv")
    return manifest


def test_predict_classifies_clips_and_names_the_ones_it_cannot_use(simulated_run, tmp_path):
    import csv

    out, _, _ = simulated_run
    manifest = _cohort_manifest(out)
    rows = manifest.read_text().splitlines()
    bad = tmp_path / "clips.csv"
    short = tmp_path / "short"
    short.mkdir()
    a_video = sorted(manifest.parent.rglob("*.avi"))[0]
    # A manifest with 6 good clips, a missing file and a one-frame folder.
    lines = [rows[0]] + [r.replace("videos/", f"{manifest.parent}/videos/") for r in rows[1:7]]
    lines.append("S99,/no/such/clip.avi,1,2,3,positive,synthetic,100")
    shutil.copy(a_video, short / "not-a-frame.txt")  # a folder with no frame in it
    lines.append(f"S98,{short},0,1,1,positive,synthetic,100")
    bad.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "predict", str(bad), "--model", str(out),
         "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "/no/such/clip.avi" in proc.stderr and "not found" in proc.stderr
    assert str(short) in proc.stderr
    with open(tmp_path / "p.csv") as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 6
    for p in predictions:
        total = sum(float(p[f"p_{c}"]) for c in ("negative", "positive", "surprise"))
        assert total == pytest.approx(1.0, abs=1e-5)
        assert p["predicted"] in {"negative", "positive", "surprise"}


def test_predict_refuses_preprocessing_the_model_was_not_trained_with(simulated_run, tmp_path):
    out, _, _ = simulated_run
    clip = sorted(_cohort_manifest(out).parent.rglob("*.avi"))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "predict", str(clip), "--model", str(out),
         "--flow", "farneback", "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "trained with flow_method='dis', not 'farneback'" in proc.stderr
    assert "preprocessing.json" in proc.stderr


def test_predict_spots_and_classifies_the_intervals_of_a_long_video(simulated_run, tmp_path):
    import csv

    out, _, _ = simulated_run
    video = tmp_path / "long.avi"
    made = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "long-video", str(video), "--seconds", "7",
         "--num-expressions", "3", "--min-gap-seconds", "1", "--num-head-moves", "2",
         "--seed", "11"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    truth = video.with_suffix(".intervals.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "predict", str(video), "--model", str(out), "--spot",
         "--truth", str(truth), "--out", str(tmp_path / "intervals.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TP 3, spotted 3, ground truth 3" in proc.stdout and "F1 1.000" in proc.stdout
    with open(tmp_path / "intervals.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(truth) as handle:
        planted = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row, plant in zip(rows, planted):
        assert abs(int(row["apex"]) - int(plant["apex"])) <= 3
        assert row["predicted"] in {"negative", "positive", "surprise"}
        total = sum(float(row[f"p_{c}"]) for c in ("negative", "positive", "surprise"))
        assert total == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "intervals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"\x00" * 1000)
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "predict", str(broken), "--model", str(out),
         "--spot", "--fps", "50", "--out", str(tmp_path / "b.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and str(broken) in proc.stderr
    assert "cannot open video" in proc.stderr


def _browser_or_none():
    from fedmer.browser_screenshot import BrowserNotFound, find_browser

    try:
        return find_browser()
    except BrowserNotFound:
        return None


@pytest.mark.skipif(
    _browser_or_none() is None, reason="no headless Chromium/Chrome here (docs/edge.md)"
)
def test_the_report_renders_with_its_plots_in_a_headless_browser(simulated_run, tmp_path):
    import cv2

    out, _, _ = simulated_run
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "report", str(out), "--screenshot", str(shot)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    image = cv2.imread(str(shot)).astype(int)
    # The plots' blue lines, bars and confusion cells: strongly blue pixels, which the
    # page's text and tables (black on white) never have.
    blue = (image[..., 0] - image[..., 2] > 60).sum()
    assert blue > 5000, f"only {blue} plot pixels rendered"


def test_a_missing_browser_is_named(simulated_run, tmp_path):
    out, _, _ = simulated_run
    env = dict(os.environ, FEDMER_BROWSER="no-such-browser-here")
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "report", str(out), "--screenshot",
         str(tmp_path / "r.png")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1 and "FEDMER_BROWSER='no-such-browser-here'" in proc.stderr
