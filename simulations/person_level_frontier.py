"""The person-level frontier: held-out utility against the ε each person gets.

One point is one complete federation (the real ServerApp and ClientApp over
the in-process transport), held-out counts at subject sensitivity. Cross-silo
(``--silos N``): user-level DP-SGD on every lab device. Cross-device
(``--silos 0``, one subject per device, each declared single-person): the
coordinator's client-level DP-FedAvg with Poisson device sampling at
``--client-sampling-rate`` and a server optimiser; its ε holds against those who
see the released models, not the coordinator (the table says so). For each point the harness
also scores the starting model and the final model on the held-out subjects
*exactly* (from their features, in the harness, released by no one), so the
frontier is not blurred by the evaluation noise; the run's own, noised
figures are listed beside them.

    python -m simulations.person_level_frontier --subjects 64 --silos 3 \\
        --epsilons 1,2,4,8,inf --pretrain 0,8 --out docs/figures/frontier.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from client.datasets.manifest import read_manifest
from client.inference import predict
from client.local_data import load_local_data
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix, uar, uf1
from common.models import build_model
from common.node_config import HELDOUT, TRAIN
from common.results_schema import MODEL_FILE
from common.run_config import RunConfig
from simulations.default_cohort import cohort_manifest
from simulations.device_folders import Assignment
from simulations.federation import prepare_federation, run_federation


def exact_heldout(cfg: RunConfig, devices: list[Any], weights: dict[str, torch.Tensor]) -> dict:
    """UF1 and UAR of ``weights`` on every held-out clip, computed in the harness."""
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(weights)
    labels, predicted = [], []
    for device in devices:
        if device.role != HELDOUT:
            continue
        data = load_local_data(device.node_config, cfg.model)
        labels.append(data.labels)
        predicted.append(predict(model, data.features))
    cm = confusion_matrix(np.concatenate(labels), np.concatenate(predicted), 3)
    return {"uf1": uf1(cm), "uar": uar(cm), "clips": int(cm.sum())}


def run_point(
    cfg: RunConfig, out_dir: Path, assignment: list[Assignment] | None = None
) -> dict[str, Any]:
    """One federation; its person-level ε and its exact and released held-out figures."""
    started = time.monotonic()
    manifest = cohort_manifest(cfg, workers=2)
    policy = None if cfg.dp_sgd else {"allow_non_private": True}
    cfg, devices = prepare_federation(cfg, manifest, out_dir, assignment, policy=policy)
    torch.manual_seed(cfg.seed)
    start = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    if cfg.initial_model:
        start.load_state_dict(torch.load(cfg.initial_model, weights_only=True))
    run_federation(cfg, devices, transport="in-process")
    results = json.loads((out_dir / "results.json").read_text())
    final = torch.load(out_dir / MODEL_FILE, weights_only=True)
    return {
        "cohort": "megc-like" if cfg.data_manifest else "synthetic",
        "subjects": cfg.cohort_subjects,
        "silos": cfg.silos,
        "target_epsilon": (
            cfg.client_target_epsilon or (cfg.target_epsilon if cfg.dp_sgd else math.inf)
        ),
        "pretrain_subjects": cfg.pretrain_subjects,
        "person_epsilon": results["privacy"]["headline"]["epsilon"],
        "against": results["privacy"]["headline"].get("against"),
        "against_coordinator_epsilon": results["privacy"]["headline"].get(
            "against_coordinator_epsilon"
        ),
        "mechanism": _mechanism(cfg),
        "delta": cfg.delta,
        "round_0_exact": exact_heldout(cfg, devices, start.state_dict()),
        "final_exact": exact_heldout(cfg, devices, final),
        "final_released": {k: results["final"][k] for k in ("uf1", "uar")},
        "round_0_released": {k: results["round_0"].get(k) for k in ("uf1", "uar")},
        "seconds": round(time.monotonic() - started, 1),
    }


def _mechanism(cfg: RunConfig) -> str:
    if cfg.client_target_epsilon:
        noise = "distributed noise under SecAgg+" if cfg.secagg else "central noise"
        return f"client-level DP-FedAvg, {noise}"
    return "user-level DP-SGD" if cfg.dp_sgd else "none"


def plot_frontier(points: list[dict[str, Any]], path: Path) -> Path:
    """Exact held-out UF1 against person-level ε, one line per (scenario, pretraining)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {
        "cross-silo: labs, user-level DP-SGD (against everyone)": [p for p in points if p["silos"]],
        "cross-device: one person per device, client-level DP-FedAvg\n"
        "(ε against observers of the models; against the coordinator ∞, finite under SecAgg+)": [
            p for p in points if not p["silos"]
        ],
    }
    panels = {title: pts for title, pts in panels.items() if pts}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.2 * len(panels), 5.6), dpi=120, sharey=True, squeeze=False
    )
    for ax, (title, pts) in zip(axes[0], panels.items(), strict=True):
        series: dict[str, list[dict[str, Any]]] = {}
        for point in pts:
            label = f"{point['subjects']} subjects, " + (
                f"pretrained on {point['pretrain_subjects']}"
                if point["pretrain_subjects"]
                else "no pretraining"
            )
            if _under_secagg(point):
                label += ", SecAgg+"
            series.setdefault(label, []).append(point)
        for label, line in sorted(series.items(), key=lambda kv: kv[1][0]["subjects"]):
            line = sorted(line, key=lambda p: p["target_epsilon"])
            # ε = ∞ is drawn at the right edge, at x = 32.
            xs = [p["target_epsilon"] if math.isfinite(p["target_epsilon"]) else 32 for p in line]
            style = "o-" if line[0]["pretrain_subjects"] else "s--"
            if _under_secagg(line[0]):
                style = "^-."
            ax.plot(xs, [p["final_exact"]["uf1"] for p in line], style, label=label)
        ax.axhline(1 / 3, color="grey", ls=":", lw=1, label="chance (UAR)")
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 32], ["1", "2", "4", "8", "∞"])
        ax.set(xlabel="person-level ε (δ = 1e-5)", ylim=(0, 1.02))
        ax.set_title(title, fontsize=9)
        # Below the axes: the cross-device panel has a dozen lines.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out UF1 (exact)")
    fig.suptitle("fedmer: utility against the ε every person gets", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def frontier_table(points: list[dict[str, Any]]) -> str:
    """The Markdown table of every point, with the arguments that reproduce it."""
    lines = [
        "| cohort | scenario | public pretraining | target ε | person-level ε (worst) | "
        "holds against | ε against the coordinator | "
        "round 0 UF1 (exact) | final UF1 (exact) | final UAR (exact) | final UF1 (released) | "
        "arguments |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        pre = f"{p['pretrain_subjects']} subjects" if p["pretrain_subjects"] else "none"
        against = str(p.get("against") or "")
        who = "observers of the models" if "not the coordinator" in against else "everyone"
        coordinator = p.get("against_coordinator_epsilon", p["person_epsilon"])
        lines.append(
            f"| {p['subjects']}{' (megc-like)' if p.get('cohort') == 'megc-like' else ''} | "
            f"{_scenario(p)} | {pre} | {p['target_epsilon']:g} | "
            f"{p['person_epsilon']:.2f} | {who} | {coordinator:.2f} | "
            f"{p['round_0_exact']['uf1']:.3f} | "
            f"{p['final_exact']['uf1']:.3f} | {p['final_exact']['uar']:.3f} | "
            f"{p['final_released']['uf1']:.3f} | `{p['command_args']}` |"
        )
    return "\n".join(lines)


def _under_secagg(point: dict[str, Any]) -> bool:
    return "SecAgg+" in str(point.get("mechanism", ""))


def _scenario(point: dict[str, Any]) -> str:
    if point["silos"]:
        return f"{point['silos']} labs, user-level DP-SGD"
    if _under_secagg(point):
        return "one subject per device, client-level DP-FedAvg, distributed noise (SecAgg+)"
    return "one subject per device, client-level DP-FedAvg"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--subjects", default="64", help="cohort sizes, comma-separated")
    p.add_argument("--silos", type=int, default=3, help="lab devices (0 = one per subject)")
    p.add_argument("--heldout", type=int, default=16, help="held-out subjects")
    p.add_argument("--epsilons", default="1,2,4,8,inf", help="person-level targets")
    p.add_argument("--pretrain", default="0,8", help="public pretraining subjects (0 = none)")
    p.add_argument("--rounds", type=int, default=RunConfig.num_server_rounds)
    p.add_argument(
        "--local-epochs",
        type=int,
        default=RunConfig.local_epochs,
        help="local epochs per round (a phone holds a few clips: more local work per round)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--plain-learning-rate",
        type=float,
        default=0.05,
        help="local step size of the ε = ∞ points: plain SGD diverges at the DP step size",
    )
    p.add_argument(
        "--client-sampling-rate",
        type=float,
        default=0.25,
        help="cross-device: Poisson rate of devices per round",
    )
    p.add_argument(
        "--secagg",
        action="store_true",
        help="cross-device: the devices add the noise under SecAgg+ (3 shares, threshold 2), "
        "so the figure holds against the coordinator too, without the sampling's amplification",
    )
    p.add_argument("--server-optimizer", default="momentum", help="cross-device")
    p.add_argument("--server-learning-rate", type=float, default=0.5, help="cross-device")
    p.add_argument(
        "--manifest",
        type=Path,
        help="a prepared manifest to draw the people from (a megc-like pool, "
        "simulations.megc_pool) instead of the synthetic cohort",
    )
    p.add_argument("--cache-dir", default="", help="feature cache of --manifest's clips")
    p.add_argument("--out", type=Path, required=True, help="JSON of every point")
    p.add_argument("--plot", type=Path, help="PNG of UF1 against ε (all points in --out)")
    args = p.parse_args(argv)
    points = json.loads(args.out.read_text()) if args.out.exists() else []
    for subjects in (int(s) for s in args.subjects.split(",")):
        for pretrain in (int(s) for s in args.pretrain.split(",")):
            for eps in (float(s) for s in args.epsilons.split(",")):
                cfg = _point_config(args, subjects, pretrain, eps)
                assignment = (
                    pool_assignment(args.manifest, subjects, args.heldout, args.seed, args.silos)
                    if args.manifest
                    else None
                )
                with tempfile.TemporaryDirectory() as tmp:
                    point = run_point(cfg, Path(tmp) / "run", assignment)
                point["command_args"] = _command_args(args, subjects, pretrain, eps)
                points.append(point)
                print(json.dumps(point), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(points, indent=1) + "\n")
    if args.plot:
        plot_frontier(points, args.plot)
    return 0


def pool_assignment(
    manifest: Path, subjects: int, heldout: int, seed: int, silos: int
) -> list[Assignment]:
    """Devices for ``subjects`` training people drawn from ``manifest``, and ``heldout`` others.

    One seeded order of the people serves every cohort size: the held-out
    people are its first ``heldout`` (the same for every point), the training
    people the next ``subjects``, so a smaller cohort is part of a larger one.
    Cross-device: one device per person. Cross-silo (``silos`` > 0): one lab
    device per dataset, and the held-out people on one device.
    """
    table = read_manifest(manifest)
    people = sorted({c.subject for c in table.clips})
    if subjects + heldout > len(people):
        raise ValueError(
            f"{manifest}: {len(people)} people, fewer than {subjects} training and "
            f"{heldout} held out"
        )
    order = [people[i] for i in np.random.default_rng(seed).permutation(len(people))]
    held, train = order[:heldout], order[heldout : heldout + subjects]
    if not silos:
        return [(s, TRAIN) for s in train] + [(s, HELDOUT) for s in held]
    dataset = {c.subject: c.dataset for c in table.clips}
    labs: dict[str, list[str]] = {}
    for person in train:
        labs.setdefault(dataset[person], []).append(person)
    return [(tuple(labs[d]), TRAIN) for d in sorted(labs)] + [(tuple(held), HELDOUT)]


def _point_config(args: argparse.Namespace, subjects: int, pretrain: int, eps: float) -> RunConfig:
    private = math.isfinite(eps)
    cfg = RunConfig(
        cohort_subjects=subjects,
        silos=args.silos,
        num_heldout_subjects=args.heldout,
        pretrain_subjects=pretrain,
        num_server_rounds=args.rounds,
        local_epochs=args.local_epochs,
        seed=args.seed,
        learning_rate=RunConfig.learning_rate if private else args.plain_learning_rate,
        # Held-out subjects get the same person-level ε as the training ones.
        evaluation_epsilon=eps if private else 8.0,
    )
    if args.manifest:
        cfg = cfg.replace(data_manifest=str(args.manifest.resolve()), cache_dir=args.cache_dir)
    if args.silos:
        return cfg.replace(dp_sgd=private, target_epsilon=eps if private else 8.0)
    # Cross-device: the device trains in the clear and the coordinator noises;
    # the ε = ∞ point is plain FedAvg with the same local work.
    return cfg.replace(
        dp_sgd=False,
        learning_rate=args.plain_learning_rate,
        min_nodes=2,
        client_target_epsilon=eps if private else 0.0,
        client_sampling_rate=args.client_sampling_rate if private else 0.0,
        server_optimizer=args.server_optimizer if private else "sgd",
        server_learning_rate=args.server_learning_rate if private else 1.0,
        secagg=bool(args.secagg and private),
        secagg_num_shares=3,
        secagg_reconstruction_threshold=2,
    )


def _command_args(args: argparse.Namespace, subjects: int, pretrain: int, eps: float) -> str:
    command = (
        f"--subjects {subjects} --silos {args.silos} --heldout {args.heldout} "
        f"--epsilons {eps:g} --pretrain {pretrain} --rounds {args.rounds} --seed {args.seed}"
        + (
            f" --local-epochs {args.local_epochs}"
            if args.local_epochs != RunConfig.local_epochs
            else ""
        )
    )
    if args.manifest:
        command += f" --manifest {args.manifest} --cache-dir {args.cache_dir}"
    if not math.isfinite(eps) or not args.silos:
        command += f" --plain-learning-rate {args.plain_learning_rate:g}"
    if not args.silos:
        command += (
            f" --client-sampling-rate {args.client_sampling_rate:g} --server-optimizer "
            f"{args.server_optimizer} --server-learning-rate {args.server_learning_rate:g}"
        )
        if args.secagg:
            command += " --secagg"
    return command


if __name__ == "__main__":
    raise SystemExit(main())
