"""Benchmark: how much of a round is the devices' local training, and where the rest goes.

Efficiency = Σ over devices of their local training time ÷ (Σ round wall time × cores):
1.0 would mean every core trained a device for the whole round. Each
scenario is one complete fedmer federation of the real ServerApp and ClientApp:

* ``default``: today's default cohort and mechanism (three lab devices running
  user-level DP-SGD, one held-out device), without the pretrained start;
* ``cross-device-64``: 64 one-subject devices (48 training, 16 held out on one
  device) training in the clear under client-level DP-FedAvg (ε 8), every
  device every round.

Both run on the in-process transport, with every device in this process
and with the devices spread over one worker process per core
(``--workers``); ``cross-device-64`` also on Flower's Simulation Runtime
(Ray, one CPU per virtual SuperNode). The timers are a bench-only
ClientApp mod (innermost, around each handler: census, train, evaluate) and a
wrapper around the local training functions; both write one line per call to
a file, so they also work inside Ray's worker processes. The rest of a round
(the server's aggregation, accounting, plots and message building, the
payload guard) is the rounds' wall time minus the train and evaluate
handlers' time, where the handlers run one after another (in-process); with
workers or under Ray they overlap, so there it is not a difference and is
left out. The census
runs once, before round 1, outside the rounds' wall time.

    python -m bench.bench_efficiency [--rounds 4] [--scenarios default,cross-device-64]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

TIMINGS_ENV = "FEDMER_BENCH_TIMINGS"


def _record(kind: str, seconds: float) -> None:
    with open(os.environ[TIMINGS_ENV], "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, "seconds": seconds}) + "\n")


def timing_mod(msg: Any, context: Any, call_next: Callable[..., Any]) -> Any:
    """Bench-only mod: the wall time of each handler call, by message type."""
    started = time.perf_counter()
    reply = call_next(msg, context)
    _record(f"handler:{msg.metadata.message_type.split('.')[0]}", time.perf_counter() - started)
    return reply


def _timed(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(kind, time.perf_counter() - started)

    return wrapper


def install_training_timers() -> None:
    """Wrap the three local training functions where the train handler calls them."""
    import client.training_round as training_round

    for name in ("train_subject_level", "train_with_dp", "train_plain"):
        fn = getattr(training_round, name)
        if not hasattr(fn, "__wrapped__"):
            setattr(training_round, name, _timed("local_training", fn))


def _config(scenario: str, rounds: int):
    from common.run_config import RunConfig

    if scenario == "default":
        return RunConfig(num_server_rounds=rounds, pretrain_subjects=0), None
    if scenario == "cross-device-64":
        from bench.bench_scale import CROSS_DEVICE_POLICY, cross_device_config

        return cross_device_config(64, rounds), CROSS_DEVICE_POLICY
    raise ValueError(f"unknown scenario {scenario!r}")


def run_scenario(
    scenario: str, transport: str, rounds: int, out_dir: Path, workers: int = 1
) -> dict[str, Any]:
    from simulations.default_cohort import cohort_manifest
    from simulations.federation import prepare_federation, run_federation

    cfg, policy = _config(scenario, rounds)
    manifest = cohort_manifest(cfg, workers=2)
    cfg, devices = prepare_federation(cfg, manifest, out_dir, policy=policy)
    timings = out_dir / "timings.jsonl"
    os.environ[TIMINGS_ENV] = str(timings)
    install_training_timers()
    # Ray's workers import the ClientApp afresh; the wrapper is installed there
    # by this mod's first call (see _mod_installing_timers).
    run_federation(
        cfg, devices, transport=transport, extra_mods=[_mod_installing_timers], workers=workers
    )
    results = json.loads((out_dir / "results.json").read_text())
    totals: dict[str, float] = defaultdict(float)
    for line in timings.read_text().splitlines():
        row = json.loads(line)
        totals[row["kind"]] += row["seconds"]
    round_wall = sum(float(r["seconds"]) for r in results["rounds"])
    return {
        "scenario": scenario,
        "transport": transport if workers == 1 else f"{transport}, {workers} workers",
        "devices": len(devices),
        "rounds": len(results["rounds"]),
        "round_wall": round_wall,
        **totals,
    }


def _mod_installing_timers(msg: Any, context: Any, call_next: Callable[..., Any]) -> Any:
    install_training_timers()
    return timing_mod(msg, context, call_next)


def _row(point: dict[str, Any], cores: int) -> str:
    wall = point["round_wall"]
    training = point.get("local_training", 0.0)
    train_handler = point.get("handler:train", 0.0)
    evaluate = point.get("handler:evaluate", 0.0)
    census = point.get("handler:query", 0.0)
    # The census runs once, before round 1, outside the rounds' wall time.
    sequential = point["transport"] == "in-process"
    rest = wall - train_handler - evaluate if sequential else float("nan")
    cells = [
        point["scenario"],
        point["transport"],
        str(point["devices"]),
        f"{wall:.1f} s",
        f"{training / (wall * cores):.2f}",
        f"{training:.1f} s",
        f"{train_handler - training:.1f} s",
        f"{evaluate:.1f} s",
        f"{census:.1f} s",
        "–" if rest != rest else f"{rest:.1f} s",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    from bench.machine import describe_machine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--scenarios", default="default,cross-device-64")
    p.add_argument("--transports", default="in-process,in-process-workers,simulation")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    points = []
    for scenario in args.scenarios.split(","):
        for transport in args.transports.split(","):
            if scenario == "default" and transport == "simulation":
                continue  # three devices cannot fill Ray's workers; in-process only
            workers = cores if transport == "in-process-workers" else 1
            transport = "in-process" if workers > 1 else transport
            with tempfile.TemporaryDirectory() as tmp:
                # First an untimed run: caches, imports.
                run_scenario(scenario, transport, 1, Path(tmp) / "warm", workers)
                run = run_scenario(scenario, transport, args.rounds, Path(tmp) / "run", workers)
                points.append(run)
    print(describe_machine())
    print()
    print(
        "| scenario | transport | devices | Σ round wall | efficiency | local training | "
        "rest of train handler | evaluate handler | census (before round 1) | server and transport |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for point in points:
        print(_row(point, cores))
    print()
    print(json.dumps(points))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
