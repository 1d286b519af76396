"""``fedmer simulate``: federated DP-SGD rounds on simulated devices, locally.

A front-end over the same ServerApp and ClientApp that ``flwr run .`` runs:
it makes sure the data exists and is prepared (with progress bars), then hands
over to Flower's Simulation Runtime with one device per subject.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from common.run_config import RunConfig


def register(commands: argparse._SubParsersAction) -> None:
    defaults = RunConfig()
    p = commands.add_parser(
        "simulate",
        help="simulate federated rounds locally (default: built-in synthetic cohort)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="generic manifest CSV (default: synthetic cohort)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<run-id>)")
    p.add_argument("--rounds", type=int, default=defaults.num_server_rounds)
    p.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--model", default=defaults.model)
    p.add_argument(
        "--target-epsilon",
        type=float,
        default=defaults.target_epsilon,
        help="sample-level ε each device may spend over the whole run; sigma is "
        "calibrated once for it (0 = use --noise-multiplier)",
    )
    p.add_argument("--noise-multiplier", type=float, default=defaults.noise_multiplier)
    p.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    p.add_argument("--delta", type=float, default=defaults.delta)
    p.add_argument(
        "--heldout",
        type=int,
        default=defaults.num_heldout_subjects,
        help="subjects held out of training, evaluated every round",
    )
    p.add_argument(
        "--subjects",
        type=int,
        default=defaults.cohort_subjects,
        help="synthetic cohort: number of subjects",
    )
    p.add_argument(
        "--clips-per-class",
        type=int,
        default=defaults.cohort_clips_per_class,
        help="synthetic cohort: clips per class and subject",
    )
    p.add_argument(
        "--strategy",
        default=defaults.strategy,
        help="fedavg, fedprox, trimmed-mean, median, krum or multikrum",
    )
    p.add_argument(
        "--max-update-norm",
        type=float,
        default=defaults.max_update_norm,
        help="reject updates whose L2 distance from the global model exceeds this (0 = off)",
    )
    p.add_argument(
        "--epsilon-budget",
        type=float,
        default=defaults.epsilon_budget,
        help="sample-level ε each device refuses to exceed",
    )
    p.add_argument(
        "--client-target-epsilon",
        type=float,
        default=defaults.client_target_epsilon,
        help="client-level DP-FedAvg: ε for the whole run (0 = off)",
    )
    p.add_argument("--secagg", action="store_true", help="aggregate with SecAgg+")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for data generation and preprocessing",
    )
    p.add_argument("--verbose", action="store_true", help="show Flower's own log")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.datasets.manifest import read_manifest
    from client.local_data import preprocessing_for
    from client.prepare import prepare_clips
    from simulations.default_cohort import ensure_cohort
    from simulations.flower_runtime import run_flower_simulation
    from simulations.synthetic import CohortSpec

    started = time.monotonic()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out_dir = (args.out or Path("runs") / run_id).resolve()
    if args.data:
        manifest = args.data.resolve()
    else:
        spec = CohortSpec(
            num_subjects=args.subjects, clips_per_class=args.clips_per_class, seed=args.seed
        )
        print(
            f"[fedmer] synthetic cohort: {spec.num_subjects} subjects, "
            f"{3 * spec.clips_per_class} clips each (seed {spec.seed})",
            flush=True,
        )
        manifest = ensure_cohort(spec, workers=args.workers, progress=True)

    cfg = RunConfig(
        num_server_rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        model=args.model,
        target_epsilon=args.target_epsilon,
        noise_multiplier=args.noise_multiplier,
        max_grad_norm=args.max_grad_norm,
        delta=args.delta,
        seed=args.seed,
        num_heldout_subjects=args.heldout,
        cohort_subjects=args.subjects,
        cohort_clips_per_class=args.clips_per_class,
        data_manifest=str(manifest),
        out_dir=str(out_dir),
        strategy=args.strategy,
        max_update_norm=args.max_update_norm,
        epsilon_budget=args.epsilon_budget,
        client_target_epsilon=args.client_target_epsilon,
        secagg=args.secagg,
    )

    # Each simulated device prepares its own clips; doing it here first, in
    # parallel and with a progress bar, only warms the same device-local cache.
    table = read_manifest(manifest)
    config, cache = preprocessing_for(manifest, cfg.cache_dir)
    prepared = prepare_clips(table.clips, config, cache, workers=args.workers, progress=True)
    print(f"[fedmer] {prepared.summary()}", flush=True)
    num_devices = len({c.subject for c in table.clips})
    # Every simulated device must answer the census before round 1.
    cfg = cfg.replace(min_nodes=num_devices)

    if not args.verbose:
        _quiet_flower()
    run_flower_simulation(cfg, num_supernodes=num_devices, verbose=args.verbose)
    print(f"[fedmer] finished in {time.monotonic() - started:.0f}s; see {out_dir}", flush=True)
    return 0


def _quiet_flower() -> None:
    """Flower logs every message exchange at INFO; keep only warnings."""
    logging.getLogger("flwr").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Ray warns about a future default we do not depend on (no GPUs are used).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
