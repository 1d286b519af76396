"""Protocols: subject-independent folds, pooled metrics, and each mode end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from client.model_inputs import preprocess_config_for, sequence_input
from client.preprocessing.features import PreprocessConfig
from common.metrics import confusion_matrix, weighted_f1
from common.models import input_shape_of
from common.results_schema import validate_results
from common.run_config import RunConfig
from simulations.device_folders import read_device_index
from simulations.protocols.data import ProtocolData, load_protocol_data
from simulations.protocols.folds import Fold, check_fold, cross_dataset_fold, subject_folds
from simulations.protocols.pooled import confusion_metrics, per_dataset_metrics
from simulations.protocols.runner import ProtocolSpec, make_folds, read_results, run_protocol
from simulations.synthetic import CohortSpec, generate_cohort
from tests.scenarios import CLIP_LEVEL


def pooled_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    return confusion_metrics(confusion_matrix(y_true, y_pred, num_classes))


SUBJECTS = np.array(["a/1", "a/1", "a/2", "a/3", "a/3", "a/3", "b/1", "b/2", "b/2"])
DATASETS = np.array([s.split("/")[0] for s in SUBJECTS])


def test_loso_fold_never_trains_on_its_test_subject() -> None:
    folds = subject_folds(SUBJECTS)
    assert [f.test_subjects for f in folds] == [("a/1",), ("a/2",), ("a/3",), ("b/1",), ("b/2",)]
    for fold in folds:
        assert set(SUBJECTS[fold.train_idx]).isdisjoint(fold.test_subjects)
        assert set(SUBJECTS[fold.test_idx]) == set(fold.test_subjects)
        # Every clip is either trained on or tested, never both.
        assert sorted(np.concatenate([fold.train_idx, fold.test_idx])) == list(range(9))
    # Across folds every clip is tested exactly once.
    assert sorted(np.concatenate([f.test_idx for f in folds]).tolist()) == list(range(9))
    assert folds[2].train_idx.tolist() == [0, 1, 2, 6, 7, 8]
    assert folds[2].test_idx.tolist() == [3, 4, 5]


def test_grouped_folds_partition_subjects_without_leak() -> None:
    folds = subject_folds(SUBJECTS, num_folds=2, seed=3)
    assert len(folds) == 2
    groups = [set(f.test_subjects) for f in folds]
    assert groups[0].isdisjoint(groups[1])
    assert groups[0] | groups[1] == set(SUBJECTS)
    for fold in folds:
        assert set(SUBJECTS[fold.train_idx]).isdisjoint(fold.test_subjects)
    assert subject_folds(SUBJECTS, 2, seed=3)[0].test_subjects == folds[0].test_subjects


def test_check_fold_rejects_a_leaking_fold() -> None:
    leaky = Fold("bad", np.array([0, 1, 2]), np.array([1]), ("a/1",))
    with pytest.raises(ValueError, match=r"test subjects \['a/1'\] are in training"):
        check_fold(leaky, SUBJECTS)
    with pytest.raises(ValueError, match="need 2 <= folds <= 5"):
        subject_folds(SUBJECTS, num_folds=6)


def test_cross_dataset_trains_on_a_and_tests_on_b() -> None:
    fold = cross_dataset_fold(DATASETS, SUBJECTS, "a", "b")
    assert fold.train_idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert fold.test_idx.tolist() == [6, 7, 8]
    assert fold.test_subjects == ("b/1", "b/2")
    with pytest.raises(ValueError, match="dataset 'c' not in the data"):
        cross_dataset_fold(DATASETS, SUBJECTS, "a", "c")


def test_pooled_uf1_uar_match_hand_computation() -> None:
    # Two folds; pooled over both, not averaged per fold.
    fold1_true, fold1_pred = np.array([0, 0, 1]), np.array([0, 1, 1])
    fold2_true, fold2_pred = np.array([2, 2, 1, 0]), np.array([2, 0, 1, 0])
    y_true = np.concatenate([fold1_true, fold2_true])
    y_pred = np.concatenate([fold1_pred, fold2_pred])
    m = pooled_metrics(y_true, y_pred, 3)
    # Pooled confusion: rows true, cols predicted.
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: class0 2*2/(4+1+1)=4/6, class1 4/(4+1+0)=4/5, class2 2/(2+0+1)=2/3.
    assert m["uf1"] == pytest.approx((4 / 6 + 4 / 5 + 2 / 3) / 3)
    # Recall: 2/3, 2/2, 1/2.
    assert m["uar"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert m["accuracy"] == pytest.approx(5 / 7)
    # Weighted F1: supports 3, 2, 2.
    assert m["weighted_f1"] == pytest.approx((3 * 4 / 6 + 2 * 4 / 5 + 2 * 2 / 3) / 7)
    assert weighted_f1(np.zeros((3, 3))) == 0.0
    # The mean of per-fold UF1s would differ: pooling matters.
    per_fold = (
        pooled_metrics(fold1_true, fold1_pred, 3)["uf1"]
        + pooled_metrics(fold2_true, fold2_pred, 3)["uf1"]
    ) / 2
    assert per_fold != pytest.approx(m["uf1"])


def test_per_dataset_metrics_split_the_pooled_predictions() -> None:
    y_true = np.array([0, 1, 2, 0])
    y_pred = np.array([0, 1, 0, 0])
    datasets = np.array(["casme2", "casme2", "samm", "samm"])
    per = per_dataset_metrics(
        {d: [confusion_matrix(y_true[datasets == d], y_pred[datasets == d], 3)] for d in datasets},
        3,
    )
    assert per["casme2"]["uar"] == pytest.approx(1.0)
    assert per["samm"]["confusion"] == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert per["samm"]["uar"] == pytest.approx((1 + 0) / 2)


def _toy_data(num_subjects: int = 4, per_class: int = 3) -> ProtocolData:
    """Separable 3x28x28 features: class k lights up channel k."""
    rng = np.random.default_rng(0)
    xs, ys, subjects = [], [], []
    for s in range(num_subjects):
        for label in range(3):
            for _ in range(per_class):
                x = rng.normal(scale=0.3, size=(3, 28, 28)).astype(np.float32)
                x[label] += 1.5
                xs.append(x)
                ys.append(label)
                subjects.append(f"toy/s{s}")
    return ProtocolData(np.stack(xs), np.array(ys), np.array(subjects), np.array(["toy"] * len(ys)))


def test_make_folds_requires_a_dataset_for_single_dataset_loso() -> None:
    data = _toy_data()
    mixed = ProtocolData(
        data.features, data.labels, data.subjects, np.array(["x"] * 18 + ["y"] * 18)
    )
    with pytest.raises(ValueError, match="choose one of x, y"):
        make_folds(mixed, ProtocolSpec("loso", "centralized"))
    only_x, folds = make_folds(mixed, ProtocolSpec("loso", "centralized", dataset="x"))
    assert len(only_x) == 18 and len(folds) == 2


def test_centralized_baseline_learns_separable_data(tmp_path: Path) -> None:
    spec = ProtocolSpec(
        "loso",
        "centralized",
        run=RunConfig(
            **CLIP_LEVEL, num_server_rounds=2, local_epochs=1, batch_size=4, learning_rate=0.1
        ),
    )
    result = run_protocol(_toy_data(), spec, tmp_path / "unused.csv", tmp_path / "out")
    assert result["num_folds"] == 4 and result["pooled"]["num_clips"] == 36
    assert result["pooled"]["uf1"] > 0.9
    for fold in range(1, 5):
        # The baseline writes the same results document as a federated run.
        validate_results(read_results(tmp_path / "out" / f"fold-{fold:02d}"))


@pytest.mark.parametrize("mode", ["centralized", "federated", "federated-dp"])
def test_every_mode_runs_loso_through_the_real_apps_and_reports_one_format(
    tiny_cohort: tuple[Path, str], tmp_path: Path, mode: str
) -> None:
    manifest, cache_dir = tiny_cohort
    data = load_protocol_data(manifest, cache_dir)
    run = RunConfig(
        **CLIP_LEVEL,
        num_server_rounds=1 if mode != "centralized" else 2,
        local_epochs=1,
        batch_size=4,
        learning_rate=0.1,
        target_epsilon=8.0,
        cache_dir=cache_dir,
    )
    spec = ProtocolSpec("loso", mode, run=run, plain_learning_rate=0.05)
    result = run_protocol(data, spec, manifest, tmp_path)
    assert result["num_folds"] == 3
    assert sum(f["num_test"] for f in result["folds"]) == 18
    if mode == "centralized":
        assert result["pooled"]["num_clips"] == 18
    else:
        # Held-out counts are released with Gaussian noise (accounted on the device).
        assert abs(result["pooled"]["num_clips"] - 18) <= 18
    assert set(result["pooled"]) == {
        "uf1",
        "uar",
        "accuracy",
        "weighted_f1",
        "confusion",
        "released",
        "num_clips",
    }
    assert set(result["per_dataset"]) == set(data.datasets.tolist())
    for number, fold in enumerate(result["folds"], 1):
        fold_dir = tmp_path / f"fold-{number:02d}"
        results = read_results(fold_dir)  # the one schema, validated
        if mode == "centralized":
            continue
        index = read_device_index(fold_dir / "devices")
        trained = {d["subject"] for d in index if d["role"] == "train"}
        held_out = {d["subject"] for d in index if d["role"] == "heldout"}
        # The held-out subject never trains; it is the fold's test subject.
        assert held_out == set(fold["test_subjects"]) and trained.isdisjoint(held_out)
        assert sorted(results["rounds"][0]["trained"]) == sorted(
            d["device_id"] for d in index if d["role"] == "train"
        )
        ledgers = list((fold_dir / "devices").glob("partition-*/state/privacy_ledger.jsonl"))
        # Every device records its rounds (the non-private ones as ε = ∞) and
        # the held-out device its evaluation releases.
        assert len(ledgers) == len(trained) + len(held_out)
    if mode == "federated-dp":
        assert result["epsilon"] == 8.0
        assert 0 < result["epsilon_spent"] <= 8.0 * 1.01
    else:
        assert result["epsilon"] is None and result["epsilon_spent"] is None


def test_spec_rejects_unknown_names_and_infinite_dp_budget() -> None:
    with pytest.raises(ValueError, match="protocol 'kfold' must be one of loso, composite"):
        ProtocolSpec("kfold", "centralized")
    with pytest.raises(ValueError, match="ε = ∞ is the federated mode"):
        ProtocolSpec(
            "loso", "federated-dp", run=RunConfig(**CLIP_LEVEL, target_epsilon=float("inf"))
        )
    assert (
        ProtocolSpec(
            "loso", "federated", run=RunConfig(**CLIP_LEVEL, target_epsilon=float("inf"))
        ).epsilon
        is None
    )


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """3 subjects x 2 clips per class of the synthetic cohort, with its own cache."""
    root = tmp_path_factory.mktemp("protocol-cohort")
    spec = CohortSpec(num_subjects=3, clips_per_class=2, seed=0)
    return generate_cohort(root / "cohort", spec, workers=1), str(root / "cache")


@pytest.mark.parametrize("mode", ["centralized", "federated-dp"])
def test_sequence_model_runs_loso_on_prepared_flow_sequences(
    tiny_cohort: tuple[Path, str], tmp_path: Path, mode: str
) -> None:
    manifest, cache_dir = tiny_cohort
    # Apex features first, as `fedmer evaluate` loads them: the runner prepares
    # the sequences c3d_light declares through the same cache.
    data = load_protocol_data(manifest, cache_dir)
    assert data.features.shape[1:] == (3, 28, 28)
    sequences = data.for_model("c3d_light")
    assert sequences.features.shape == (18, *input_shape_of("c3d_light"))
    assert np.isfinite(sequences.features).all()
    assert (sequences.subjects == data.subjects).all()
    assert load_protocol_data(manifest, cache_dir, model="msr3d") is sequences  # one shape

    run = RunConfig(
        **CLIP_LEVEL,
        model="c3d_light",
        num_server_rounds=1,
        local_epochs=1,
        batch_size=4,
        learning_rate=0.1,
        target_epsilon=8.0,
        cache_dir=cache_dir,
    )
    spec = ProtocolSpec("loso", mode, run=run, folds=3)
    _, folds = make_folds(sequences, spec)
    for fold in folds:
        assert set(sequences.subjects[fold.train_idx]).isdisjoint(fold.test_subjects)
        assert set(sequences.subjects[fold.test_idx]) == set(fold.test_subjects)
    result = run_protocol(data, spec, manifest, tmp_path)
    assert result["model"] == "c3d_light" and result["num_folds"] == 3
    assert [f["test_subjects"] for f in result["folds"]] == [list(f.test_subjects) for f in folds]
    assert all(f["num_train"] == 12 and f["num_test"] == 6 for f in result["folds"])
    assert set(result["pooled"]) == {
        "uf1",
        "uar",
        "accuracy",
        "weighted_f1",
        "confusion",
        "released",
        "num_clips",
    }
    if mode == "centralized":
        assert result["pooled"]["num_clips"] == 18
    if mode == "federated-dp":
        assert 0 < result["epsilon_spent"] <= 8.0 * 1.01
    else:
        assert result["epsilon_spent"] is None


def test_sequence_config_overrides_only_the_sequence_length() -> None:
    base = PreprocessConfig(flow_method="farneback", scale_percentile=95.0)
    assert preprocess_config_for("ststnet", base) is base
    seq = preprocess_config_for("msr3d", base)
    assert seq == dataclasses.replace(base, sequence_length=input_shape_of("msr3d")[1])
    with pytest.raises(ValueError, match="takes 28x28 inputs"):
        preprocess_config_for("c3d_light", PreprocessConfig(feature_size=32))
    flow = np.zeros((4, 2, 8, 8), dtype=np.float32)
    flow[1:, 0] = np.arange(8, dtype=np.float32)  # u grows along x: strain 1
    x = sequence_input(flow, PreprocessConfig(normalization="none"))
    assert x.shape == (3, 4, 8, 8)
    assert x[2, 0].max() == 0.0 and np.allclose(x[2, 1:], 1.0)
    with pytest.raises(ValueError, match="manifest is unknown"):
        _toy_data().for_model("c3d_light")
