"""DP-SGD (Opacus) local epoch time against a plain SGD epoch on the same data.

Both are timed in this one run, alternating, on the same STSTNet and the same
prepared features, so the ratio does not depend on the machine's speed that day.

    python -m bench.bench_dp_overhead [--clips 256] [--batch-size 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from bench.machine import describe_machine
from client.dp_training import DPSettings, train_with_dp
from common.models import build_model


def plain_epoch(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int, lr: float) -> None:
    """The non-DP baseline: the same model, optimizer and batch size, no Opacus."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    perm = torch.randperm(len(xt))
    model.train()
    for start in range(0, len(xt), batch_size):
        idx = perm[start : start + batch_size]
        opt.zero_grad()
        loss_fn(model(xt[idx]), yt[idx]).backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one simulated device = one core
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.clips, 3, 28, 28)).astype(np.float32)
    y = rng.integers(0, 3, args.clips)
    dp_times, plain_times = [], []
    for r in range(args.repeats + 1):
        model = build_model("ststnet")
        t0 = time.perf_counter()
        train_with_dp(
            model,
            x,
            y,
            epochs=1,
            batch_size=args.batch_size,
            learning_rate=0.5,
            dp=DPSettings(1.0, 1.0, 1e-5),
            history=[],
            seed=r,
        )
        t1 = time.perf_counter()
        plain_epoch(build_model("ststnet"), x, y, args.batch_size, 0.5)
        t2 = time.perf_counter()
        if r:  # the first repetition warms up allocators and Opacus hooks
            dp_times.append(t1 - t0)
            plain_times.append(t2 - t1)
    dp, plain = statistics.median(dp_times), statistics.median(plain_times)
    print(f"machine: {describe_machine()}")
    print(
        f"STSTNet, {args.clips} clips, batch {args.batch_size}, 1 thread, median of {args.repeats}"
    )
    print(
        f"| DP-SGD epoch | plain epoch | ratio |\n|---|---|---|\n| {dp * 1e3:.0f} ms | {plain * 1e3:.0f} ms | {dp / plain:.2f}x |"
    )


if __name__ == "__main__":
    main()
