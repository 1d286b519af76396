"""The three modes and an epsilon sweep on one protocol: table and privacy-utility plot."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simulations.protocols.runner import ProtocolSpec


def comparison_specs(base: ProtocolSpec, epsilons: Sequence[float]) -> list[ProtocolSpec]:
    """Centralized, non-DP FedAvg, then FedAvg+DP at each finite epsilon (ascending).

    An infinite epsilon in the sweep is the non-DP FedAvg row itself, so it is
    run once.
    """
    specs = [
        dataclasses.replace(base, mode="centralized"),
        dataclasses.replace(base, mode="federated"),
    ]
    for eps in sorted({e for e in epsilons if math.isfinite(e)}):
        if eps <= 0:
            raise ValueError(f"epsilon must be positive, got {eps}")
        specs.append(
            dataclasses.replace(base, mode="federated-dp", run=base.run.replace(target_epsilon=eps))
        )
    return specs


def row_label(result: dict[str, Any]) -> str:
    """Short human name of a results row."""
    if result["mode"] == "centralized":
        return f"centralized {result['model']}"
    if result["mode"] == "federated":
        return f"FedAvg {result['model']} (ε=∞)"
    return f"FedAvg+DP {result['model']} (ε={result['epsilon']:g})"


def render_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table; ΔUF1 is relative to the centralized row."""
    central = next((r for r in results if r["mode"] == "centralized"), None)
    lines = [
        "| setting | ε target | ε spent | UF1 | UAR | accuracy | weighted F1 "
        "| ΔUF1 vs centralized | clips | folds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r["pooled"]
        delta = f"{p['uf1'] - central['pooled']['uf1']:+.3f}" if central else "n/a"
        target = "∞" if r["epsilon"] is None else f"{r['epsilon']:g}"
        spent = "—" if r["epsilon_spent"] is None else f"{r['epsilon_spent']:.2f}"
        if r["mode"] == "centralized":
            target, delta = "no DP", "0"
        lines.append(
            f"| {row_label(r)} | {target} | {spent} | {p['uf1']:.4f} | {p['uar']:.4f} | "
            f"{p['accuracy']:.4f} | {p['weighted_f1']:.4f} | {delta} | {p['num_clips']} | "
            f"{r['num_folds']} |"
        )
    return "\n".join(lines) + "\n"


def render_per_dataset(results: Sequence[dict[str, Any]]) -> str:
    """MEGC-style per-dataset UF1/UAR columns (empty when there is one dataset)."""
    names = sorted({d for r in results for d in r["per_dataset"]})
    if len(names) < 2:
        return ""
    header = "| setting | " + " | ".join(f"{n} UF1 | {n} UAR" for n in names) + " |"
    lines = [header, "|---|" + "---|---|" * len(names)]
    for r in results:
        cells = []
        for n in names:
            m = r["per_dataset"].get(n)
            cells += [f"{m['uf1']:.4f}", f"{m['uar']:.4f}"] if m else ["—", "—"]
        lines.append(f"| {row_label(r)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_privacy_utility(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """UF1 and UAR against epsilon, with centralized and non-DP FedAvg as lines."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    dp = sorted((r for r in results if r["mode"] == "federated-dp"), key=lambda r: r["epsilon"])
    refs = {r["mode"]: r for r in results if r["mode"] != "federated-dp"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, metric in zip(axes, ("uf1", "uar")):
        if dp:
            ax.plot(
                [r["epsilon"] for r in dp],
                [r["pooled"][metric] for r in dp],
                "o-",
                color="tab:red",
                label="FedAvg + DP-SGD",
            )
        styles = {
            "centralized": ("tab:blue", "--", "centralized (no DP)"),
            "federated": ("tab:green", ":", "FedAvg (no DP, ε=∞)"),
        }
        for mode, (color, style, label) in styles.items():
            if mode in refs:
                ax.axhline(refs[mode]["pooled"][metric], color=color, linestyle=style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("target ε (sample-level, worst device)")
        ax.set_ylabel(metric.upper())
        ax.set_ylim(0, 1.02)  # a perfect score stays visible above the grid
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric.upper()} vs ε")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
