"""``fedmer evaluate``: one MER protocol in one mode, pooled over folds.

Protocols: ``loso`` (one dataset), ``composite`` (MEGC2019, 3 classes, LOSO
over every subject of every dataset, with per-dataset scores) and ``cross``
(train on one dataset, test on another). Modes: ``centralized``,
``federated`` (FedAvg, one device per training subject) and ``federated-dp``
(FedAvg with DP-SGD). All modes write the same results JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.atomic_io import write_json_atomic
from common.run_config import RunConfig


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
    p.add_argument(
        "--epsilon",
        type=float,
        default=RunConfig().target_epsilon,
        help="federated-dp: sample-level ε each device may spend over all rounds",
    )
    p.add_argument("--out", type=Path, default=Path("runs/evaluate.json"), help="results JSON file")
    add_protocol_arguments(p)
    p.set_defaults(handler=run)


def add_protocol_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``evaluate`` and ``compare``."""
    d = RunConfig()
    p.add_argument("--protocol", choices=("loso", "composite", "cross"), default="loso")
    p.add_argument("--data", type=Path, help="manifest CSV (default: synthetic cohort)")
    p.add_argument("--dataset", help="loso: the dataset to use when the data has several")
    p.add_argument("--train-dataset", help="cross: dataset to train on")
    p.add_argument("--test-dataset", help="cross: dataset to test on")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="group subjects into this many folds (default: one per subject, LOSO)",
    )
    p.add_argument("--model", default=d.model)
    p.add_argument(
        "--rounds",
        type=int,
        default=d.num_server_rounds,
        help="FedAvg rounds; centralized trains rounds x local-epochs epochs",
    )
    p.add_argument("--local-epochs", type=int, default=d.local_epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--lr", type=float, default=d.learning_rate, help="step size of DP-SGD (clipped gradients)"
    )
    p.add_argument(
        "--plain-lr", type=float, default=0.05, help="step size of the non-DP modes (unclipped SGD)"
    )
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    p.add_argument("--delta", type=float, default=d.delta)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--subjects",
        type=int,
        default=d.cohort_subjects,
        help="synthetic cohort: number of subjects",
    )
    p.add_argument(
        "--clips-per-class",
        type=int,
        default=d.cohort_clips_per_class,
        help="synthetic cohort: clips per class and subject",
    )
    p.add_argument("--cache-dir", default="", help="feature cache (default: fedmer cache)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))


def spec_from_args(
    args: argparse.Namespace, mode: str, epsilon: float = RunConfig().target_epsilon
):
    """The ProtocolSpec the arguments describe."""
    from simulations.protocols.runner import ProtocolSpec

    return ProtocolSpec(
        protocol=args.protocol,
        mode=mode,
        model=args.model,
        target_epsilon=epsilon,
        folds=args.folds,
        dataset=args.dataset,
        train_dataset=args.train_dataset,
        test_dataset=args.test_dataset,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        plain_learning_rate=args.plain_lr,
        max_grad_norm=args.max_grad_norm,
        delta=args.delta,
        seed=args.seed,
    )


def load_data(args: argparse.Namespace):
    """Prepared features of ``--data``, or of the synthetic cohort."""
    import torch

    from simulations.protocols.data import load_protocol_data

    # The models are tiny and overhead-bound: one intra-op thread is faster
    # than two fighting over a small machine's cores.
    torch.set_num_threads(1)

    if args.data:
        manifest = args.data.resolve()
    else:
        from simulations.default_cohort import ensure_cohort
        from simulations.synthetic import CohortSpec

        spec = CohortSpec(
            num_subjects=args.subjects, clips_per_class=args.clips_per_class, seed=args.seed
        )
        say(
            f"synthetic cohort: {spec.num_subjects} subjects, "
            f"{3 * spec.clips_per_class} clips each (seed {spec.seed})"
        )
        manifest = ensure_cohort(spec, workers=args.workers, progress=True)
    data = load_protocol_data(manifest, args.cache_dir, args.workers)
    say(
        f"{len(data)} clips from {len(set(data.subjects.tolist()))} subjects "
        f"({', '.join(sorted(set(data.datasets.tolist())))}); {len(data.skipped)} skipped"
    )
    return data, manifest


def run(args: argparse.Namespace) -> int:
    from simulations.protocols.runner import run_protocol

    try:
        spec = spec_from_args(args, args.mode, args.epsilon)
        data, manifest = load_data(args)
        result = run_protocol(data, spec, say)
    except ValueError as err:
        # Bad settings or data: one clear line, not a traceback.
        return fail(err)
    result["manifest"] = str(manifest)
    write_json_atomic(args.out, result)
    p = result["pooled"]
    say(
        f"{spec.protocol}/{spec.mode}: UF1 {p['uf1']:.4f} UAR {p['uar']:.4f} "
        f"acc {p['accuracy']:.4f} weighted F1 {p['weighted_f1']:.4f} over {p['num_clips']} "
        f"clips, {result['num_folds']} folds; results in {args.out}"
    )
    return 0


def say(line: str) -> None:
    print(f"[fedmer] {line}", flush=True)


def fail(err: Exception) -> int:
    print(f"[fedmer] error: {err}", file=sys.stderr, flush=True)
    return 2
