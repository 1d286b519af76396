"""PNG plot of held-out UF1, UAR and cumulative epsilon against the round."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_rounds(rounds: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Two y-axes: utility (left) and cumulative ε (right), person-level first.

    A round 0 entry (the starting model, evaluated before any federated round)
    is plotted at x = 0 with no spend.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on devices and CI
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(xs, [r["uf1"] for r in rounds], "o-", label="held-out UF1")
    ax.plot(xs, [r["uar"] for r in rounds], "s-", label="held-out UAR")
    ax.axhline(1 / 3, color="grey", ls=":", lw=1, label="chance (3 classes)")
    ax.set_xlabel("round")
    ax.set_ylabel("UF1 / UAR")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    person = [r.get("person_epsilon", 0.0) for r in rounds]
    if any(math.isfinite(p) for p in person):
        finite = [p if math.isfinite(p) else float("nan") for p in person]
        ax2.plot(xs, finite, "^-", color="tab:red", label="ε per person (worst subject)")
    ax2.plot(
        xs,
        [r.get("epsilon", 0.0) for r in rounds],
        "v--",
        color="tab:orange",
        alpha=0.7,
        label="ε in the device's unit (worst device)",
    )
    ax2.set_ylabel("cumulative ε (RDP)", color="tab:red")
    ax2.set_ylim(bottom=0)  # an axis starting above 0 would exaggerate the growth
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title(title or "fedmer: held-out utility and privacy spend per round")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
