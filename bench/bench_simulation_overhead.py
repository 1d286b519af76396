"""Flower's simulation engine against a plain single-process loop doing the same work.

Both sides run the same devices' DP-SGD training (``client.dp_training``),
the same sample-weighted averaging and the same held-out evaluation, on the
same prepared cohort, in this one run. The ratio is the price of Flower's
runtime (Ray actors, message serialization, the census) on this machine.

    python -m bench.bench_simulation_overhead [--subjects 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import describe_machine
from client.dp_training import DPSettings, predict, train_with_dp
from client.local_data import load_local_data
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix, uf1
from common.models import build_model
from common.run_config import RunConfig


def plain_loop(cfg: RunConfig, num_devices: int) -> float:
    """Same rounds without Flower: returns the final held-out UF1."""
    devices = [load_local_data({"partition-id": p}, cfg) for p in range(num_devices)]
    train = [d for d in devices if d.role == "train" and len(d)]
    heldout = [d for d in devices if d.role == "heldout"]
    model = build_model(cfg.model)
    global_state = model.state_dict()
    histories: dict[str, list] = {d.device_id: [] for d in train}
    for server_round in range(1, cfg.num_server_rounds + 1):
        states, weights = [], []
        for d in train:
            local = build_model(cfg.model)
            local.load_state_dict(global_state)
            result = train_with_dp(
                local,
                d.features,
                d.labels,
                epochs=cfg.local_epochs,
                batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                dp=DPSettings(cfg.noise_multiplier, cfg.max_grad_norm, cfg.delta),
                history=histories[d.device_id],
                seed=server_round,
            )
            histories[d.device_id] = result.history
            states.append(local.state_dict())
            weights.append(result.num_examples)
        w = np.asarray(weights, dtype=np.float64) / sum(weights)
        global_state = {k: sum(float(wi) * s[k] for wi, s in zip(w, states)) for k in global_state}
    model.load_state_dict(global_state)
    cm = sum(
        confusion_matrix(d.labels, predict(model, d.features), len(COMPOSITE_CLASSES))
        for d in heldout
    )
    return uf1(cm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--heldout", type=int, default=2)
    parser.add_argument("--clips-per-class", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from simulations.default_cohort import ensure_cohort
    from simulations.flower_runtime import run_flower_simulation
    from simulations.synthetic import CohortSpec

    spec = CohortSpec(num_subjects=args.subjects, clips_per_class=args.clips_per_class)
    manifest = ensure_cohort(spec, workers=2)
    with tempfile.TemporaryDirectory() as out:
        cfg = RunConfig(
            num_server_rounds=args.rounds,
            num_heldout_subjects=args.heldout,
            target_epsilon=0.0,
            noise_multiplier=1.1,
            data_manifest=str(manifest),
            min_nodes=args.subjects,
            out_dir=out,
        )
        # Warm the feature cache so neither side pays for preprocessing.
        load_local_data({"partition-id": 0}, cfg)
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        plain_uf1 = plain_loop(cfg, args.subjects)
        t1 = time.perf_counter()
        run_flower_simulation(cfg, num_supernodes=args.subjects)
        t2 = time.perf_counter()
        flower_uf1 = json.loads((Path(out) / "results.json").read_text())["final"]["uf1"]
    plain, flower = t1 - t0, t2 - t1
    print(f"machine: {describe_machine()}")
    print(
        f"{args.subjects} devices ({args.heldout} held out), {args.rounds} rounds, "
        f"{3 * args.clips_per_class} clips/device, sigma 1.1"
    )
    print("| plain loop | Flower simulation | ratio | UF1 plain | UF1 Flower |")
    print("|---|---|---|---|---|")
    print(
        f"| {plain:.1f} s | {flower:.1f} s | {flower / plain:.1f}x | {plain_uf1:.3f} | {flower_uf1:.3f} |"
    )


if __name__ == "__main__":
    main()
