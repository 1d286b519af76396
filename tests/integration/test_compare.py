"""`fedmer compare` pieces: the sweep's rows, the table, the plot, the CLI wiring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedmer.cli import build_parser
from fedmer.compare_command import parse_epsilons
from simulations.protocols.compare import (
    comparison_specs,
    plot_privacy_utility,
    render_per_dataset,
    render_table,
)
from simulations.protocols.runner import ProtocolSpec


def _result(mode: str, uf1: float, uar: float, eps: float | None = None) -> dict:
    return {
        "mode": mode,
        "model": "ststnet",
        "epsilon": eps,
        "epsilon_spent": None if eps is None else eps * 0.99,
        "num_folds": 16,
        "pooled": {"uf1": uf1, "uar": uar, "accuracy": 0.5, "weighted_f1": 0.4, "num_clips": 384},
        "per_dataset": {
            "casme2": {"uf1": uf1, "uar": uar},
            "samm": {"uf1": uf1 / 2, "uar": uar / 2},
        },
    }


def test_sweep_runs_three_modes_and_each_finite_epsilon_once() -> None:
    specs = comparison_specs(ProtocolSpec("loso", "centralized"), [8, 1, math.inf, 4, 8])
    assert [(s.mode, s.epsilon) for s in specs] == [
        ("centralized", None),
        ("federated", None),
        ("federated-dp", 1),
        ("federated-dp", 4),
        ("federated-dp", 8),
    ]
    assert {s.protocol for s in specs} == {"loso"}
    with pytest.raises(ValueError, match="epsilon must be positive"):
        comparison_specs(ProtocolSpec("loso", "centralized"), [0])


def test_parse_epsilons_accepts_inf_and_names_bad_input() -> None:
    assert parse_epsilons("1, 2,inf") == [1.0, 2.0, math.inf]
    with pytest.raises(ValueError, match="--epsilons 'one'"):
        parse_epsilons("one")


def test_table_reports_each_row_and_the_gap_to_centralized() -> None:
    rows = [
        _result("centralized", 0.8, 0.82),
        _result("federated", 0.75, 0.76),
        _result("federated-dp", 0.6, 0.61, 8.0),
    ]
    table = render_table(rows).splitlines()
    assert len(table) == 5
    assert table[2].startswith("| centralized ststnet | no DP | — | 0.8000 | 0.8200 |")
    assert "| FedAvg ststnet (ε=∞) | ∞ | — | 0.7500 |" in table[3]
    assert "| -0.050 |" in table[3]
    assert "| FedAvg+DP ststnet (ε=8) | 8 | 7.92 | 0.6000 |" in table[4]
    assert "| -0.200 |" in table[4]
    per = render_per_dataset(rows).splitlines()
    assert per[0] == "| setting | casme2 UF1 | casme2 UAR | samm UF1 | samm UAR |"
    assert per[2] == "| centralized ststnet | 0.8000 | 0.8200 | 0.4000 | 0.4100 |"


def test_privacy_utility_plot_is_a_png(tmp_path: Path) -> None:
    rows = [_result("centralized", 0.8, 0.82), _result("federated", 0.75, 0.76)]
    rows += [_result("federated-dp", 0.3 + 0.05 * e, 0.3 + 0.05 * e, e) for e in (1, 4, 8)]
    path = plot_privacy_utility(rows, tmp_path / "pu.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_cli_exposes_evaluate_and_compare() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "evaluate",
            "--protocol",
            "composite",
            "--mode",
            "federated-dp",
            "--target-epsilon",
            "4",
            "--folds",
            "4",
        ]
    )
    assert (args.protocol, args.mode, args.target_epsilon, args.folds) == (
        "composite",
        "federated-dp",
        4.0,
        4,
    )
    args = parser.parse_args(
        ["compare", "--protocol", "cross", "--train-dataset", "casme2", "--test-dataset", "samm"]
    )
    assert args.epsilons == "1,2,4,8,inf" and args.train_dataset == "casme2"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--mode", "dp"])


def test_compare_runs_every_fold_through_the_real_apps(tmp_path: Path, monkeypatch) -> None:
    """Acceptance: each fold leaves device ledgers and a results.json of the one schema."""
    import json

    from common.privacy.ledger_audit import audit_chain
    from common.results_schema import validate_results
    from fedmer.cli import main

    monkeypatch.setenv("FEDMER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "compare"
    code = main(
        [
            "compare",
            "--protocol", "loso",
            "--folds", "4",
            "--epsilons", "8",
            "--cohort-subjects", "4",
            "--cohort-clips-per-class", "2",
            "--num-server-rounds", "1",
            "--local-epochs", "1",
            "--batch-size", "4",
            "--workers", "1",
            "--out-dir", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert (out / "comparison.md").exists() and (out / "privacy_utility.png").exists()
    for row in ("centralized", "federated", "federated-dp-eps8"):
        summary = json.loads((out / row / "protocol.json").read_text())
        assert summary["num_folds"] == 4 and sum(f["num_test"] for f in summary["folds"]) == 24
        for fold in range(1, 5):
            fold_dir = out / row / f"fold-{fold:02d}"
            results = json.loads((fold_dir / "results.json").read_text())
            validate_results(results)
            if row == "centralized":
                continue
            ledgers = sorted(fold_dir.glob("devices/partition-*/state/privacy_ledger.jsonl"))
            assert len(ledgers) == 4  # the three training subjects and the held-out one
            if row == "federated-dp-eps8":
                assert all(audit_chain(ledger).ok for ledger in ledgers)
                kept = sorted((fold_dir / "ledger" / "devices").glob("*.jsonl"))
                assert len(kept) == 4  # the coordinator's copies of the signed entries
                assert 0 < results["privacy"]["worst_epsilon"] <= 8.0 * 1.001
