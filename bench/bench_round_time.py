"""Round wall time against the number of devices: real SuperNodes and Flower's simulation.

Two kinds of measurement, every one of them a complete fedmer run of the same
ServerApp and ClientApp (DP-SGD, held-out evaluation):

* ``real``: a real ``flower-superlink`` (TLS + ``--enable-supernode-auth``) and
  one real ``flower-supernode`` process per device on 127.0.0.1, started by
  :class:`simulations.deployment.LocalDeployment`, driven by ``flwr run .``;
  each device has its own synthetic data directory (one subject);
* ``worker``: the same real deployment, each SuperNode with its warm device
  worker (``fedmer device-worker``), so a message's ``flwr-clientapp``
  process only hands it on instead of importing torch and the device code;
* ``floor``: the same real deployment running ``bench/flower_floor``, a Flower
  App with fedmer's message exchange (train to the training devices, and in
  the same exchange evaluate to the held-out one) and nothing done in it:
  Flower's own cost per round;
* ``floor2``: the same no-op app with Flower's usual round of two stages
  (train, then evaluate), to show what one exchange per round saves;
* ``sim``: the same apps on Flower's Simulation Runtime (Ray backend),
  ``simulations.flower_runtime.run_flower_simulation``, one subject per device.

``N`` is the number of training devices; one more device holds out a subject
for evaluation. Feature caches are warmed first, so no round pays for
preprocessing. Times are the ServerApp's own per-round ``seconds`` from
``results.json``: census refresh and training, with the previous round's
held-out evaluation in the same exchange (the last round's evaluation, alone
after it, is in the whole run's time only; the floor app's likewise).

Each point runs in a child process of its own (Ray and Flower keep global
state), and every process the real deployment starts is stopped by PID.

    python -m bench.bench_round_time [--floor 3] [--real 3,10] [--worker 3] [--sim 3,10,30]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIPS_PER_CLASS = 3  # 9 clips per device
REPO_ROOT = Path(__file__).resolve().parents[1]
FLOOR_APP = Path(__file__).resolve().parent / "flower_floor"
LABELS = {
    "floor": "real SuperNodes, Flower's floor (a no-op app)",
    "floor2": "real SuperNodes, Flower's floor, two stages a round",
    "real": "real SuperNodes",
    "worker": "real SuperNodes, device workers",
    "sim": "simulation (Ray)",
}
KEEP_LOGS = os.environ.get("FEDMER_BENCH_KEEP_LOGS")  # copy the deployment's logs here


def _warm(data_dir: Path, role: str) -> None:
    from client.local_data import load_local_data
    from common.node_config import NodeConfig

    node = NodeConfig(data_dir=str(data_dir), role=role, cache_dir=str(data_dir / ".fedmer-cache"))
    load_local_data(node, "ststnet")


def run_real(
    num_train: int,
    rounds: int,
    clips_per_class: int,
    workers: bool = False,
    floor: str = "",
) -> dict:
    """One real deployment; ``floor`` "riding" or "two" runs the no-op app instead."""
    from simulations.deployment import LocalDeployment
    from simulations.synthetic import CohortSpec, generate_cohort

    with tempfile.TemporaryDirectory(prefix="fedmer-bench-real-") as tmp:
        root = Path(tmp)
        dirs = []
        for i in range(num_train + 1):
            d = root / "data" / f"device-{i + 1:03d}"
            generate_cohort(
                d, CohortSpec(num_subjects=1, clips_per_class=clips_per_class, seed=600 + i)
            )
            _warm(d, "heldout" if i == num_train else "train")
            dirs.append(d)
        out = root / "run"
        with LocalDeployment(root / "deployment", device_workers=workers) as dep:
            dep.start_superlink()
            for i, d in enumerate(dirs):
                role = "heldout" if i == num_train else "train"
                dep.start_supernode(dep.add_device(d.name, d, role=role))
            dep.wait_online(num_train + 1, timeout=300)
            t0 = time.perf_counter()
            if floor:
                out.mkdir()
                run_config: dict[str, object] = {"out": str(out / "floor.json"), "stages": floor}
                app = FLOOR_APP
            else:
                run_config = {"local-epochs": 1, "round-timeout": 900.0, "out-dir": str(out)}
                app = REPO_ROOT
            run_config.update({"num-server-rounds": rounds, "min-nodes": num_train + 1})
            code, log = dep.flwr_run(run_config, timeout=600 + 300 * rounds, app=app)
            total = time.perf_counter() - t0
            if code != 0:
                raise RuntimeError(f"flwr run exited {code}:\n{dep.logs_text()[-6000:]}")
            if KEEP_LOGS:
                shutil.copytree(dep.logs, KEEP_LOGS, dirs_exist_ok=True)
        if floor:
            seconds = json.loads((out / "floor.json").read_text())["round_seconds"]
            return _floor_point(
                "floor" if floor == "riding" else "floor2", num_train, seconds, total
            )
        results = json.loads((out / "results.json").read_text())
    return _point("worker" if workers else "real", num_train, results, total)


def _floor_point(mode: str, num_train: int, seconds: list[float], total: float) -> dict:
    return {
        "mode": mode,
        "train_devices": num_train,
        "round_seconds": [round(s, 3) for s in seconds],
        "total_seconds": round(total, 1),
    }


def run_sim(num_train: int, rounds: int, clips_per_class: int) -> dict:
    import torch

    from client.local_data import load_local_data
    from common.run_config import RunConfig
    from simulations.default_cohort import ensure_cohort
    from simulations.federation import prepare_federation, run_federation
    from simulations.synthetic import CohortSpec

    n = num_train + 1
    manifest = ensure_cohort(CohortSpec(num_subjects=n, clips_per_class=clips_per_class), workers=2)
    with tempfile.TemporaryDirectory(prefix="fedmer-bench-sim-") as out:
        cfg = RunConfig(
            num_server_rounds=rounds, num_heldout_subjects=1, local_epochs=1, round_timeout=900.0
        )
        cfg, devices = prepare_federation(cfg, manifest, Path(out))
        for d in devices:  # warm the shared feature cache
            load_local_data(d.node_config, cfg.model)
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        run_federation(cfg, devices)
        total = time.perf_counter() - t0
        results = json.loads((Path(out) / "results.json").read_text())
    return _point("sim", num_train, results, total)


def _point(mode: str, num_train: int, results: dict, total: float) -> dict:
    rounds = results["rounds"]
    return {
        "mode": mode,
        "train_devices": num_train,
        "round_seconds": [r["seconds"] for r in rounds],
        "trained": [len(r["trained"]) for r in rounds],
        "final_uf1": results["final"]["uf1"],
        "total_seconds": round(total, 1),
    }


def _child(mode: str, num_train: int, rounds: int, clips: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_round_time",
        "--one",
        f"{mode}:{num_train}",
        "--rounds",
        str(rounds),
        "--clips-per-class",
        str(clips),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"mode": mode, "train_devices": num_train, "error": (proc.stdout + proc.stderr)[-2000:]}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default="3,10", help="training-device counts, real processes")
    parser.add_argument(
        "--floor", default="", help="training-device counts, the no-op app (Flower's floor)"
    )
    parser.add_argument(
        "--floor2", default="", help="training-device counts, the no-op app, two stages a round"
    )
    parser.add_argument(
        "--worker", default="", help="training-device counts, real processes with device workers"
    )
    parser.add_argument("--sim", default="3,10,30", help="training-device counts, simulation")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips-per-class", type=int, default=CLIPS_PER_CLASS)
    parser.add_argument("--json", type=Path, help="also write all points here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: "MODE:N"
    args = parser.parse_args()

    if args.one:
        mode, n = args.one.split(":")
        point = (
            run_sim(int(n), args.rounds, args.clips_per_class)
            if mode == "sim"
            else run_real(
                int(n),
                args.rounds,
                args.clips_per_class,
                workers=mode == "worker",
                floor={"floor": "riding", "floor2": "two"}.get(mode, ""),
            )
        )
        print("RESULT " + json.dumps(point), flush=True)
        return

    from bench.machine import describe_machine

    points = []
    runs = (
        ("floor", args.floor),
        ("floor2", args.floor2),
        ("real", args.real),
        ("worker", args.worker),
        ("sim", args.sim),
    )
    for mode, counts in ((m, _ints(c)) for m, c in runs):
        for n in counts:
            point = _child(mode, n, args.rounds, args.clips_per_class)
            print(json.dumps(point), flush=True)
            points.append(point)
    if args.json:
        args.json.write_text(json.dumps(points, indent=1))
    print(f"machine: {describe_machine()}")
    print(
        f"{args.rounds} rounds, {3 * args.clips_per_class} clips per device, 1 local epoch, "
        "DP-SGD target eps 8, +1 held-out device"
    )
    print("| runtime | training devices | round 1 | round 2 | later rounds (mean) | whole run |")
    print("|---|---|---|---|---|---|")
    for p in points:
        label = LABELS[p["mode"]]
        if "error" in p:
            print(f"| {label} | {p['train_devices']} | failed | | | |")
            continue
        s = p["round_seconds"]
        later = f"{sum(s[1:]) / len(s[1:]):.1f} s" if len(s) > 1 else "-"
        r2 = f"{s[1]:.1f} s" if len(s) > 1 else "-"
        print(
            f"| {label} | {p['train_devices']} | {s[0]:.1f} s | {r2} | {later} | "
            f"{p['total_seconds']:.0f} s |"
        )
    for line in _allowance_lines(points):
        print(line)


def _warm_rounds(point: dict) -> list[float]:
    """The rounds after the first (which pays the devices' start-up)."""
    return point["round_seconds"][1:] or point["round_seconds"]


def _allowance_lines(points: list[dict]) -> list[str]:
    """Goal: a warm deployed round within 3x the simulation's warm round plus Flower's floor."""
    by = {(p["mode"], p["train_devices"]): p for p in points if "error" not in p}
    lines = []
    for (mode, n), p in sorted(by.items()):
        sim, floor = by.get(("sim", n)), by.get(("floor", n))
        if mode not in ("real", "worker") or sim is None or floor is None:
            continue
        sim_s, floor_s = _mean(_warm_rounds(sim)), _mean(_warm_rounds(floor))
        allowance = 3 * sim_s + floor_s
        warm = _warm_rounds(p)
        lines.append(
            f"{LABELS[mode]}, {n} devices: warm rounds mean {_mean(warm):.1f} s, max "
            f"{max(warm):.1f} s; allowance 3 x {sim_s:.2f} s + floor {floor_s:.1f} s = "
            f"{allowance:.1f} s (mean / allowance {_mean(warm) / allowance:.2f})"
        )
    return lines


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
