"""Flower's Simulation Runtime against the in-process transport, on the same federation.

Both sides run the one ServerApp loop and the real ClientApp (payload guard,
ledger, DP-SGD) on the same materialized devices and prepared cohort, in this
one run; only the transport differs. The ratio is the price of Flower's
Simulation Runtime (Ray start-up, actors, message serialization) on this
machine.

    python -m bench.bench_simulation_overhead [--subjects 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.machine import describe_machine
from client.local_data import load_local_data
from common.run_config import RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--heldout", type=int, default=2)
    parser.add_argument("--clips-per-class", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from simulations.default_cohort import ensure_cohort
    from simulations.federation import prepare_federation, run_federation
    from simulations.synthetic import CohortSpec

    spec = CohortSpec(num_subjects=args.subjects, clips_per_class=args.clips_per_class)
    manifest = ensure_cohort(spec, workers=2)
    cfg = RunConfig(
        num_server_rounds=args.rounds,
        num_heldout_subjects=args.heldout,
        target_epsilon=0.0,
        noise_multiplier=1.1,
        # One subject per device, clip-level DP-SGD at a fixed σ, and a budget
        # that lasts every round: the same work in every round on both sides.
        silos=0,
        dp_unit="clip",
        pretrain_subjects=0,
        epsilon_budget=100.0,
    )
    torch.set_num_threads(1)
    seconds, uf1 = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for transport in ("in-process", "simulation"):
            run_cfg, devices = prepare_federation(cfg, manifest, Path(tmp) / transport)
            for d in devices:  # warm the feature cache so neither side preprocesses
                load_local_data(d.node_config, cfg.model)
            started = time.perf_counter()
            run_federation(run_cfg, devices, transport=transport)
            seconds[transport] = time.perf_counter() - started
            results = json.loads((Path(run_cfg.out_dir) / "results.json").read_text())
            uf1[transport] = results["final"]["uf1"]
    print(f"machine: {describe_machine()}")
    print(
        f"{args.subjects} devices ({args.heldout} held out), {args.rounds} rounds, "
        f"{3 * args.clips_per_class} clips/device, sigma 1.1"
    )
    print("| in-process | Flower Simulation Runtime | ratio | UF1 in-process | UF1 simulation |")
    print("|---|---|---|---|---|")
    local, ray = seconds["in-process"], seconds["simulation"]
    print(
        f"| {local:.1f} s | {ray:.1f} s | **{ray / local:.1f}×** | "
        f"{uf1['in-process']:.3f} | {uf1['simulation']:.3f} |"
    )


if __name__ == "__main__":
    main()
