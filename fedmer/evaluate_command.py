"""``fedmer evaluate``: one MER protocol in one mode, pooled over folds.

Protocols: ``loso`` (one dataset), ``composite`` (MEGC2019, 3 classes, LOSO
over every subject of every dataset, with per-dataset scores) and ``cross``
(train on one dataset, test on another). Modes: ``centralized``,
``federated`` (FedAvg, one device per training subject, no DP) and
``federated-dp`` (FedAvg with DP-SGD). The federated modes run every fold
through the real ServerApp and ClientApp over the in-process transport; each
fold leaves a ``results.json`` (the same schema as ``fedmer simulate``) and,
for the federated modes, the devices' ledgers, under ``OUT_DIR/fold-NN/``.
``OUT_DIR/protocol.json`` pools the folds.

Every run-config key is a flag of the same name; ``min-nodes`` and
``simulation-dir`` are set per fold from the devices it materializes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.atomic_io import write_json_atomic
from common.run_config import RunConfig
from fedmer.run_config_flags import add_run_config_flags, run_config_from_args

HARNESS_KEYS = ("min-nodes", "simulation-dir", "num-heldout-subjects")
SUMMARY_FILE = "protocol.json"


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate",
        help="evaluate one protocol (loso, composite, cross) in one mode",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--mode", choices=("centralized", "federated", "federated-dp"), default="centralized"
    )
    add_protocol_arguments(p, default_out="runs/evaluate")
    p.set_defaults(handler=run)


def add_protocol_arguments(p: argparse.ArgumentParser, default_out: str) -> None:
    """Arguments shared by ``evaluate`` and ``compare``."""
    p.add_argument("--protocol", choices=("loso", "composite", "cross"), default="loso")
    p.add_argument("--dataset", help="loso: the dataset to use when the data has several")
    p.add_argument("--train-dataset", help="cross: dataset to train on")
    p.add_argument("--test-dataset", help="cross: dataset to test on")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="group subjects into this many folds (default: one per subject, LOSO)",
    )
    p.add_argument(
        "--plain-learning-rate",
        type=float,
        default=0.05,
        help="step size of the non-DP modes (unclipped SGD); learning-rate is DP-SGD's",
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    add_run_config_flags(p, exclude=HARNESS_KEYS, defaults=RunConfig(out_dir=default_out))


def spec_from_args(args: argparse.Namespace, mode: str):  # type: ignore[no-untyped-def]
    """The ProtocolSpec the arguments describe."""
    from simulations.protocols.runner import ProtocolSpec

    return ProtocolSpec(
        protocol=args.protocol,
        mode=mode,
        run=run_config_from_args(args),
        folds=args.folds,
        dataset=args.dataset,
        train_dataset=args.train_dataset,
        test_dataset=args.test_dataset,
        plain_learning_rate=args.plain_learning_rate,
    )


def load_data(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Prepared features of ``--data-manifest``, or of the synthetic cohort."""
    import torch

    from simulations.default_cohort import cohort_manifest
    from simulations.protocols.data import load_protocol_data

    # The models are tiny and overhead-bound: one intra-op thread is faster
    # than two fighting over a small machine's cores.
    torch.set_num_threads(1)
    cfg = run_config_from_args(args)
    manifest = cohort_manifest(cfg, workers=args.workers, progress=True)
    data = load_protocol_data(manifest, cfg.cache_dir, args.workers)
    say(
        f"{len(data)} clips from {len(set(data.subjects.tolist()))} subjects "
        f"({', '.join(sorted(set(data.datasets.tolist())))}); {len(data.skipped)} skipped"
    )
    return data, manifest


def run(args: argparse.Namespace) -> int:
    from simulations.protocols.runner import run_protocol

    out_dir = Path(args.out_dir).resolve()
    try:
        spec = spec_from_args(args, args.mode)
        data, manifest = load_data(args)
        quiet_flower()
        result = run_protocol(data, spec, manifest, out_dir, say)
    except ValueError as err:
        # Bad settings or data: one clear line, not a traceback.
        return fail(err)
    result["manifest"] = str(manifest)
    write_json_atomic(out_dir / SUMMARY_FILE, result)
    p = result["pooled"]
    say(
        f"{spec.protocol}/{spec.mode}: UF1 {p['uf1']:.4f} UAR {p['uar']:.4f} "
        f"acc {p['accuracy']:.4f} weighted F1 {p['weighted_f1']:.4f} over {p['num_clips']} "
        f"clips, {result['num_folds']} folds; results in {out_dir}"
    )
    if spec.mode != "centralized":
        # Federated folds pool what the held-out devices released: noised counts,
        # which can sum to fewer (even negative) clips than the data holds.
        say(
            f"these figures pool the held-out devices' noised releases ({len(data)} clips "
            f"held out in all); the final models' exact figures: "
            f"python -m simulations.exact_heldout {out_dir}/fold-*"
        )
    return 0


def say(line: str) -> None:
    print(f"[fedmer] {line}", flush=True)


def fail(err: Exception) -> int:
    print(f"[fedmer] error: {err}", file=sys.stderr, flush=True)
    return 2


def quiet_flower() -> None:
    import logging

    # The ServerApp prints one line per round; in a sweep of folds that is noise.
    logging.getLogger("flwr").setLevel(logging.WARNING)
