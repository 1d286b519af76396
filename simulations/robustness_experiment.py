"""One poisoned device against FedAvg, trimmed mean and Krum, on the same cohort.

Every row uses the same synthetic cohort, seed, rounds and DP settings; only
the strategy and the attack change. Simulated device 0 (a training device)
sends ``g - s * (w - g)``: its honest update reversed and scaled by ``s``.

    python -m simulations.robustness_experiment [--subjects 8] [--rounds 4] [--scale 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common.run_config import RunConfig

ROWS = (
    ("fedavg", False),
    ("fedavg", True),
    ("trimmed-mean", True),
    ("krum", True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--heldout", type=int, default=2)
    parser.add_argument("--clips-per-class", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scale", type=float, default=20.0)
    args = parser.parse_args()

    from simulations.default_cohort import ensure_cohort
    from simulations.flower_runtime import run_flower_simulation
    from simulations.synthetic import CohortSpec

    manifest = ensure_cohort(
        CohortSpec(num_subjects=args.subjects, clips_per_class=args.clips_per_class), workers=2
    )
    table = []
    for strategy, poisoned in ROWS:
        with tempfile.TemporaryDirectory() as out:
            cfg = RunConfig(
                num_server_rounds=args.rounds,
                num_heldout_subjects=args.heldout,
                data_manifest=str(manifest),
                min_nodes=args.subjects,
                out_dir=out,
                strategy=strategy,
                poison_partition=0 if poisoned else -1,
                poison_scale=args.scale,
            )
            run_flower_simulation(cfg, num_supernodes=args.subjects)
            final = json.loads((Path(out) / "results.json").read_text())["final"]
        table.append((strategy, poisoned, final["uf1"], final["uar"]))
    clean = table[0][2]
    attack = f"1 of {args.subjects - args.heldout} devices sign-flip ×{args.scale:g}"
    print("| strategy | attack | held-out UF1 (final) | UAR | Δ UF1 vs clean FedAvg |")
    print("|---|---|---|---|---|")
    for strategy, poisoned, uf1, uar in table:
        print(
            f"| {strategy} | {attack if poisoned else 'none'} | {uf1:.3f} | {uar:.3f} | {uf1 - clean:+.3f} |"
        )


if __name__ == "__main__":
    main()
