"""Benchmark: round time and peak memory against the number of devices, up to 1,024.

Every point is a complete fedmer federation on the in-process transport (the
real ServerApp and ClientApp in one process): the cross-device scenario, one
synthetic subject per device (12 clips), each device training in the clear
and the coordinator running client-level DP-FedAvg at ε = 8 over every device
every round (no sampling, so each round does the same work for every device
and the slope is the cost of one device). By default the cohorts have 32, 80,
272 and 1,040 subjects: 16 of them are held out on one device, so 16, 64, 256
and 1,024 devices train (plus the held-out one). The cohort and the devices'
feature caches are warmed by a first, untimed run of the same size, so no
timed round pays for generation or preprocessing.

Figures, from the ServerApp's own per-round ``seconds`` in ``results.json``:
the mean of the warm rounds (2..R) per device count, the least-squares slope
(seconds per device) and its R², and each point's peak resident memory
(``ru_maxrss`` of the child process that ran it).

    python -m bench.bench_scale [--subjects 32,80,272,1040] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# The devices' node config: they train in the clear; the coordinator's
# client-level noise is the mechanism.
CROSS_DEVICE_POLICY = {"allow_non_private": True}


def cross_device_config(subjects: int, rounds: int):
    """One subject per device, client-level DP-FedAvg at ε 8 over every device every round."""
    from common.run_config import RunConfig

    return RunConfig(
        cohort_subjects=subjects,
        num_heldout_subjects=4 if subjects <= 16 else 16,
        silos=0,
        num_server_rounds=rounds,
        dp_sgd=False,
        learning_rate=0.05,
        client_target_epsilon=8.0,
        pretrain_subjects=0,
        min_nodes=2,
    )


def _point(subjects: int, rounds: int, out_dir: Path) -> dict[str, float]:
    """One federation in this process; its warm round times and peak memory."""
    from simulations.default_cohort import cohort_manifest
    from simulations.federation import prepare_federation, run_federation

    cfg = cross_device_config(subjects, rounds)
    manifest = cohort_manifest(cfg, workers=2)
    cfg, devices = prepare_federation(cfg, manifest, out_dir, policy=CROSS_DEVICE_POLICY)
    run_federation(cfg, devices, transport="in-process")
    results = json.loads((out_dir / "results.json").read_text())
    seconds = [float(r["seconds"]) for r in results["rounds"]]
    return {
        "devices": len(devices),
        "training_devices": subjects - cfg.num_heldout_subjects,
        "round_seconds": seconds,
        "warm_round_seconds": float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def _in_child(subjects: int, rounds: int) -> dict[str, float]:
    # A fresh process per point, so that ru_maxrss is that point's peak alone.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_scale",
            "--child",
            str(subjects),
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{subjects} devices failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _slope(points: list[dict[str, float]]) -> tuple[float, float, float]:
    """Least-squares seconds per training device, intercept and R²."""
    x = np.array([p["training_devices"] for p in points], dtype=float)
    y = np.array([p["warm_round_seconds"] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1 - float(np.sum(residual**2)) / float(np.sum((y - y.mean()) ** 2))
    return float(slope), float(intercept), r2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--subjects",
        default="32,80,272,1040",
        help="cohort sizes, one subject per device; 16 subjects (4 of 16) share the held-out device",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            point = _point(args.child, args.rounds, Path(tmp) / "run")
        print(json.dumps(point), flush=True)
        return 0
    from bench.machine import describe_machine

    sizes = [int(s) for s in args.subjects.split(",")]
    for n in sizes:  # warm the cohort and the feature caches, untimed
        _in_child(n, 1)
    points = [_in_child(n, args.rounds) for n in sizes]
    slope, intercept, r2 = _slope(points)
    print(describe_machine())
    print()
    print(
        "| training devices (+1 held out) | round seconds | warm round (mean of 2..R) | peak memory |"
    )
    print("|---|---|---|---|")
    for point in points:
        rounds = ", ".join(f"{s:.1f}" for s in point["round_seconds"])
        print(
            f"| {point['training_devices']} | {rounds} | {point['warm_round_seconds']:.2f} s | "
            f"{point['peak_rss_gib']:.2f} GiB |"
        )
    print()
    print(
        f"slope {slope * 1000:.1f} ms per device, intercept {intercept:.2f} s, R² {r2:.4f}; "
        f"{points[-1]['training_devices']} ÷ {points[0]['training_devices']} devices: "
        f"{points[-1]['warm_round_seconds'] / points[0]['warm_round_seconds']:.1f}× the round time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
