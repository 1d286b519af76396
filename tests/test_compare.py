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
            "--epsilon",
            "4",
            "--folds",
            "4",
        ]
    )
    assert (args.protocol, args.mode, args.epsilon, args.folds) == (
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
