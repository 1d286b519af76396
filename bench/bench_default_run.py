"""The default ``fedmer simulate``: its wall time, and whether later rounds cost more.

Runs the real command twice, each in its own process, on the cached default
cohort (an untimed first run generates and prepares it on a fresh machine):

1. ``fedmer simulate`` with every default: the command's wall time;
2. ``fedmer simulate --num-server-rounds 12``: the slowest of rounds 10-12
   over the slowest of rounds 2-4 (a round's ``seconds`` in ``results.json``
   is its exchange). A ratio near 1 means a round's cost does not grow with
   its number; accounting whose work grew with the device's history showed
   as 2-6x here.

    python -m bench.bench_default_run [--skip-warm-up]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.machine import describe_machine
from simulations.flower_processes import BIN


def _simulate(out_dir: Path, *flags: str) -> tuple[float, list[float]]:
    """Wall seconds of one ``fedmer simulate`` and its rounds' seconds."""
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "fedmer"), "simulate", "--out", str(out_dir), *flags],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    results = json.loads((out_dir / "results.json").read_text())
    return wall, [float(r["seconds"]) for r in results["rounds"]]


def late_over_early(seconds: list[float]) -> float:
    """Slowest of rounds 10-12 over the slowest of rounds 2-4 (rounds count from 1)."""
    if len(seconds) < 12:
        raise ValueError(f"need at least 12 rounds, got {len(seconds)}")
    return max(seconds[9:12]) / max(seconds[1:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-warm-up", action="store_true", help="the default cohort is already cached"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_warm_up:
            _simulate(Path(tmp) / "warm-up", "--num-server-rounds", "1")
        wall, default_rounds = _simulate(Path(tmp) / "default")
        _, rounds = _simulate(Path(tmp) / "late", "--num-server-rounds", "12")
    print(f"machine: {describe_machine()}")
    print("| figure | value |")
    print("|---|---|")
    print(f"| `fedmer simulate` (defaults), wall | **{wall:.1f} s** |")
    print(f"| its rounds' seconds | {', '.join(f'{s:.2f}' for s in default_rounds)} |")
    print(
        "| `--num-server-rounds 12`, slowest of rounds 10-12 / "
        f"slowest of rounds 2-4 | **{late_over_early(rounds):.2f}×** |"
    )
    print(f"| its rounds' seconds | {', '.join(f'{s:.2f}' for s in rounds)} |")


if __name__ == "__main__":
    main()
