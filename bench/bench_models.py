"""Step time and peak memory of every model, with and without DP-SGD, batch 32, CPU.

Each (model, mode) runs in a fresh process so that peak RSS belongs to it
alone. "plain" is an SGD step; "dp" is an Opacus DP-SGD step (per-sample
gradients, clipping, noise). Peak memory is the growth of the process's
maximum RSS over its size just before the first step, so it counts the
activations, gradients and (for DP) per-sample gradients, not PyTorch itself.

    python -m bench.bench_models [--steps 5] [--models ststnet,msr3d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

BATCH = 32


def measure(name: str, mode: str, steps: int, queue: multiprocessing.Queue) -> None:
    """Runs in a child process; puts (median step seconds, peak MiB, params)."""
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from common.models import build_model, count_parameters
    from common.models.losses import training_loss

    torch.manual_seed(0)
    model = build_model(name)
    total = BATCH * (steps + 1)
    x = torch.randn(total, *model.input_shape)
    y = torch.randint(0, 3, (total,))
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if mode == "dp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = PrivacyEngine()
            # Fixed batches of exactly 32 (no Poisson sampling) so both modes
            # time the same batch size.
            model, optimizer, loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=1.0,
                max_grad_norm=1.0,
                poisson_sampling=False,
            )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for xb, yb in loader:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss, _ = training_loss(model, xb, yb)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The first step includes one-off allocation; it is warm-up.
    inner = getattr(model, "_module", model)
    queue.put((statistics.median(times[1:]), (peak - before) / 1024, count_parameters(inner)))


def run_one(name: str, mode: str, steps: int) -> tuple[float, float, int]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(name, mode, steps, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.machine import describe_machine
    from common.models import available_models, input_shape_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument("--models", default=",".join(available_models()))
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    rows = []
    print(f"machine: {describe_machine()}; batch {BATCH}, median of {args.steps} steps")
    print(
        "| model | params | input | plain step (ms) | DP step (ms) | time ratio | "
        "plain peak (MiB) | DP peak (MiB) | memory ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        plain_s, plain_mib, params = run_one(name, "plain", args.steps)
        dp_s, dp_mib, _ = run_one(name, "dp", args.steps)
        row = {
            "model": name,
            "params": params,
            "input": list(input_shape_of(name)),
            "plain_ms": plain_s * 1e3,
            "dp_ms": dp_s * 1e3,
            "time_ratio": dp_s / plain_s,
            "plain_peak_mib": plain_mib,
            "dp_peak_mib": dp_mib,
            "memory_ratio": dp_mib / plain_mib if plain_mib > 0 else float("nan"),
        }
        rows.append(row)
        shape = "x".join(map(str, row["input"]))
        print(
            f"| {name} | {params:,} | {shape} | {row['plain_ms']:.1f} | {row['dp_ms']:.1f} | "
            f"{row['time_ratio']:.1f}x | {plain_mib:.1f} | {dp_mib:.1f} | "
            f"{row['memory_ratio']:.1f}x |",
            flush=True,
        )
    if args.json:
        payload = {"machine": describe_machine(), "batch": BATCH, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
