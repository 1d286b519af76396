"""A DP-SGD step against a plain SGD step, for every per-clip gradient method.

At the two default batch shapes (clip-level DP-SGD: 8 clips, each its own
unit; user-level DP-SGD: 4 subjects of 12 clips = 48 clips), one step of
STSTNet is timed as

* **plain**: forward, cross-entropy, backward, SGD step;
* **DP, mode m**: per-unit gradients by ``m`` (:mod:`client.per_sample_grads`:
  hooks, functorch, ew, vmap, unit-backward), each unit's gradient clipped to C
  and summed (``client.subject_dp_sgd.clipped_sum``), Gaussian noise, SGD
  step: exactly what ``train_subject_level`` does per step;
* **Opacus make_private**: Opacus' own DP-SGD step (hooks, its DPOptimizer)
  as the clip-level path (``client.dp_training.train_with_dp``) takes it.

Steps of every kind are interleaved (one of each, repeated), so the ratios do
not depend on how loaded the machine is that day. One thread: one simulated
device is one core.

    python -m bench.bench_dp_overhead [--steps 200] [--warmup 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from bench.machine import describe_machine
from client.per_sample_grads import MODES, Mode, UnitGradients
from client.subject_dp_sgd import clipped_sum
from common.models import build_model

Step = Callable[[], None]

SHAPES = {"clip-level, batch 8": (8, 1), "user-level, 4 subjects x 12 clips": (48, 12)}


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def dp_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, unit: torch.Tensor, mode: Mode
) -> Step:
    per_unit = UnitGradients(model, mode)
    opt = torch.optim.SGD(per_unit.params, lr=0.1)
    units = int(unit.max()) + 1

    def step() -> None:
        _, _, grads = per_unit(x, y, unit)
        summed = clipped_sum(grads, 1.0)
        for p, s in zip(per_unit.params, summed, strict=True):
            p.grad = (s + torch.normal(0.0, 1.0, p.shape)) / units
        opt.step()

    return step


def opacus_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Step:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    wrapped = GradSampleModule(model)
    opt = DPOptimizer(
        torch.optim.SGD(wrapped.parameters(), lr=0.1),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        expected_batch_size=len(y),
    )

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            nn.functional.cross_entropy(wrapped(x), y).backward()
        opt.step()

    return step


def time_interleaved(steps: dict[str, Step], n: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each, the kinds taking turns."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(warmup + n):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"machine: {describe_machine()}")
    print(f"STSTNet, 1 thread, median of {args.steps} interleaved steps after {args.warmup}")
    print()
    print(
        "| batch | plain step | "
        + " | ".join(f"DP {m}" for m in MODES)
        + " | Opacus make_private |"
    )
    print("|---|---|" + "---|" * (len(MODES) + 1))
    for label, (batch, clips_per_unit) in SHAPES.items():
        x = torch.randn(batch, 3, 28, 28)
        y = torch.randint(0, 3, (batch,))
        unit = torch.arange(batch) // clips_per_unit
        steps = {"plain": plain_step(build_model("ststnet"), x, y)}
        for mode in MODES:
            steps[mode] = dp_step(build_model("ststnet"), x, y, unit, mode)
        if clips_per_unit == 1:
            steps["opacus"] = opacus_step(build_model("ststnet"), x, y)
        med = time_interleaved(steps, args.steps, args.warmup)
        plain = med["plain"]
        cells = [f"{med[m] * 1e3:.2f} ms ({med[m] / plain:.2f}x)" for m in MODES]
        opacus = (
            f"{med['opacus'] * 1e3:.2f} ms ({med['opacus'] / plain:.2f}x)"
            if "opacus" in med
            else "-"
        )
        print(f"| {label} | {plain * 1e3:.2f} ms | " + " | ".join(cells) + f" | {opacus} |")


if __name__ == "__main__":
    main()
