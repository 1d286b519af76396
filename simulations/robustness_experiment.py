"""One poisoned device against FedAvg, trimmed mean and Krum, on the same cohort.

Every row uses the same synthetic cohort, seed, rounds and DP settings; only
the strategy and the attack change. Simulated device 0 (a training device)
sends ``g - s * (w - g)``: its honest update reversed and scaled by ``s``.

    python -m simulations.robustness_experiment [--subjects 8] [--rounds 4] [--scale 20]

On a prepared manifest (the megc-like benchmark, or licensed data) instead of
the easy synthetic cohort: ``--data-manifest PATH --silos N`` (N training
devices, subjects dealt round-robin) with ``--heldout`` subjects held out, and
``--no-dp`` for rows without DP-SGD, where a benchmark this hard leaves DP
rows near chance and the attack's effect could not be seen.
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
    parser.add_argument(
        "--data-manifest", type=Path, help="a prepared manifest instead of the cohort"
    )
    parser.add_argument(
        "--silos", type=int, default=0, help="training devices (0: one per subject)"
    )
    parser.add_argument("--no-dp", action="store_true", help="FedAvg without DP-SGD in every row")
    parser.add_argument(
        "--plain-learning-rate",
        type=float,
        default=0.05,
        help="with --no-dp: local step size (plain SGD diverges at the DP step size)",
    )
    parser.add_argument(
        "--dp-unit", default=RunConfig.dp_unit, help="clip or subject (the run config's dp-unit)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from common.metrics import summarize
    from simulations.default_cohort import ensure_cohort
    from simulations.device_folders import device_id_for
    from simulations.exact_heldout import exact_confusion
    from simulations.faults import PoisonUpdates
    from simulations.federation import prepare_federation, run_federation
    from simulations.synthetic import CohortSpec

    manifest = args.data_manifest or ensure_cohort(
        CohortSpec(num_subjects=args.subjects, clips_per_class=args.clips_per_class), workers=2
    )
    table = []
    for strategy, poisoned in ROWS:
        with tempfile.TemporaryDirectory() as out:
            cfg = RunConfig(
                num_server_rounds=args.rounds,
                num_heldout_subjects=args.heldout,
                strategy=strategy,
                silos=args.silos,
                seed=args.seed,
                dp_sgd=not args.no_dp,
                dp_unit=args.dp_unit,
                learning_rate=args.plain_learning_rate if args.no_dp else RunConfig.learning_rate,
            )
            policy = {"allow_non_private": True} if args.no_dp else None
            cfg, devices = prepare_federation(cfg, manifest, Path(out), policy=policy)
            # Partition 0 is a training device (training subjects come first).
            attack = [PoisonUpdates.of([device_id_for(0)], "sign-flip", args.scale)]
            run_federation(cfg, devices, extra_mods=attack if poisoned else ())
            final = json.loads((Path(out) / "results.json").read_text())["final"]
            # The simulation holds every device's data: score the final model exactly too.
            exact = summarize(exact_confusion(Path(out)))
        table.append((strategy, poisoned, final["uf1"], final["uar"], exact["uf1"], exact["uar"]))
    clean = table[0][4]
    trainers = args.silos or args.subjects - args.heldout
    attack = f"1 of {trainers} devices sign-flip ×{args.scale:g}"
    print(
        "| strategy | attack | exact held-out UF1 | exact UAR | Δ exact UF1 vs clean FedAvg | "
        "released UF1 / UAR |"
    )
    print("|---|---|---|---|---|---|")
    for strategy, poisoned, uf1, uar, exact_uf1, exact_uar in table:
        print(
            f"| {strategy} | {attack if poisoned else 'none'} | {exact_uf1:.3f} | {exact_uar:.3f} | "
            f"{exact_uf1 - clean:+.3f} | {uf1:.3f} / {uar:.3f} |"
        )


if __name__ == "__main__":
    main()
