"""``fedmer simulate``: federated DP-SGD rounds on simulated devices, locally.

A front-end over the same ServerApp and ClientApp that ``flwr run .`` runs:
it makes sure the data exists and is prepared (with progress bars), pretrains
the starting model on public synthetic subjects, writes each simulated
device's own data folder and node config (``silos`` lab devices, or one device
per subject; ``num-heldout-subjects`` held out), then runs the federation
on Flower's Simulation Runtime (``--transport simulation``, the default) or
in this process (``--transport in-process``).

Every run-config key is a flag of the same name; ``min-nodes`` and
``simulation-dir`` are set from the devices this command materializes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from fedmer.run_config_flags import add_run_config_flags, run_config_from_args

HARNESS_KEYS = ("min-nodes", "simulation-dir")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "simulate",
        help="simulate federated rounds locally (default: built-in synthetic cohort)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_config_flags(p, exclude=HARNESS_KEYS)
    harness = p.add_argument_group("harness")
    harness.add_argument(
        "--transport",
        choices=("simulation", "in-process"),
        default="simulation",
        help="Flower's Simulation Runtime (Ray), or every device in this process",
    )
    harness.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for data generation and preprocessing, and for the devices "
        "on the in-process transport",
    )
    harness.add_argument(
        "--materialize-only",
        action="store_true",
        help="write the devices' folders and node configs under OUT_DIR/devices, then stop "
        "(for `flwr run . --run-config simulation-dir=...`)",
    )
    harness.add_argument("--verbose", action="store_true", help="show Flower's own log")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.datasets.label_schemes import untrainable_labels
    from client.datasets.manifest import read_manifest
    from client.local_data import preprocessing_for
    from client.prepare import prepare_clips
    from client.run_model import write_preprocessing
    from common.labels import COMPOSITE_CLASSES
    from fedmer.run_report import write_report
    from server.operator_registry import REGISTRY_FILE
    from simulations.default_cohort import cohort_manifest
    from simulations.federation import prepare_federation, run_federation

    started = time.monotonic()
    cfg = run_config_from_args(args)
    out_dir = Path(cfg.out_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    manifest = cohort_manifest(cfg, workers=args.workers, progress=True)

    # Each simulated device prepares its own clips; doing it here first, in
    # parallel and with a progress bar, only warms the same device-local cache.
    table = read_manifest(manifest)
    untrainable = untrainable_labels(table.clips)
    if untrainable:
        # Refuse before any work: the devices would drop these clips one by one.
        shown = ", ".join(f"{label!r} ({n})" for label, n in sorted(untrainable.items()))
        print(
            f"[fedmer] error: {manifest}: {sum(untrainable.values())} of {len(table.clips)} clip(s) "
            f"have labels outside the composite classes {', '.join(COMPOSITE_CLASSES)}: {shown}. "
            "fedmer's models train the MEGC2019 composite; prepare the release with --scheme composite",
            flush=True,
        )
        return 2
    config, cache = preprocessing_for(manifest, cfg.cache_dir)
    prepared = prepare_clips(table.clips, config, cache, workers=args.workers, progress=True)
    print(f"[fedmer] {prepared.summary()}", flush=True)

    # Central DP-FedAvg without DP-SGD: the simulated operators agree to send
    # their updates to the coordinator in the clear, for it to noise.
    central = not cfg.dp_sgd and (cfg.client_target_epsilon > 0 or cfg.client_noise_multiplier > 0)
    policy = {"allow_non_private": True} if central else None
    cfg, devices = prepare_federation(cfg, manifest, out_dir, policy=policy)
    if args.materialize_only:
        print(
            f"[fedmer] {len(devices)} devices materialized; run them with "
            f"flwr run . --run-config \"simulation-dir='{cfg.simulation_dir}'\" "
            f"(options.num-supernodes = {len(devices)})",
            flush=True,
        )
        return 0
    if not args.verbose:
        _quiet_flower()
    # The devices' preprocessing settings (public, no data), so that
    # ``fedmer predict`` and ``fedmer export`` apply the same to new clips.
    write_preprocessing(out_dir, cfg.model, config)
    run_federation(
        cfg, devices, transport=args.transport, verbose=args.verbose, workers=args.workers
    )
    _add_subject_table(out_dir, devices)
    report = write_report(out_dir)
    print(f"[fedmer] report: {report}", flush=True)
    operator = json.loads((out_dir / REGISTRY_FILE).read_text())["signed_by"]
    print(
        f"[fedmer] audit it: fedmer audit {out_dir / 'ledger'} --operator-key {operator}",
        flush=True,
    )
    print(f"[fedmer] finished in {time.monotonic() - started:.0f}s; see {out_dir}", flush=True)
    return 0


def _add_subject_table(out_dir: Path, devices: list) -> None:
    """Write each subject's guarantee into results.json (the harness knows who is where)."""
    from common.atomic_io import write_json_atomic
    from common.results_schema import RESULTS_FILE
    from simulations.subject_table import subject_rows

    path = out_dir / RESULTS_FILE
    results = json.loads(path.read_text())
    rows = subject_rows(devices, results)
    results["privacy"]["subjects"] = rows
    write_json_atomic(path, results)
    worst = max(rows, key=lambda r: r["epsilon"])
    print(
        f"[fedmer] every one of {len(rows)} subjects has person-level ε ≤ {worst['epsilon']:.2f} "
        f"at δ = {worst['delta']:g} (worst: {worst['subject']}, {worst['role']})",
        flush=True,
    )


def _quiet_flower() -> None:
    """Flower logs every message exchange at INFO; keep only warnings."""
    logging.getLogger("flwr").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Ray warns about a future default we do not depend on (no GPUs are used).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
