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
    from simulations.device_folders import device_id_for
    from simulations.faults import PoisonUpdates
    from simulations.federation import prepare_federation, run_federation
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
                strategy=strategy,
            )
            cfg, devices = prepare_federation(cfg, manifest, Path(out))
            # Partition 0 is a training device (training subjects come first).
            attack = [PoisonUpdates.of([device_id_for(0)], "sign-flip", args.scale)]
            run_federation(cfg, devices, extra_mods=attack if poisoned else ())
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
