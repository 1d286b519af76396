"""Benchmark: latency on the device, on one CPU core, as ratios to decode-only.

Two jobs a device does with a trained model (``fedmer predict``):

* **one clip** (640x480, 60 frames, JPEG folders as CASME II ships them,
  rendered from the synthetic cohort): decode its 60 frames (the baseline),
  then the full path: preprocessing with the annotated apex (decodes onset
  and apex only), with the apex spotted (decodes all 60), and inference of
  the default model (STSTNet) on the features;
* **a long video** (640x480 at 50 fps, Motion JPEG, the synthetic long video
  with planted micro-expressions, blinks and head moves): decode every frame
  (the baseline), then spot the intervals (crop, smooth, two flows per
  frame, interval refinement) and classify each.

The process is pinned to one core and OpenCV and torch use one thread, as
on a phone or a small edge box. Prints a Markdown table; ratios are within
one run. Run alone:

    .venv/bin/python -m bench.bench_device_latency [--clips 12] [--seconds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_preprocessing import FRAMES, HEIGHT, WIDTH, make_clips
from bench.machine import describe_machine
from client.datasets.frames import iter_frames
from client.model_inputs import model_inputs, preprocess_config_for
from client.predict import predict_clips
from client.prepare import PreparedClip, process_clip
from client.preprocessing.face_detection import get_detector
from client.preprocessing.features import PreprocessConfig
from client.preprocessing.interval_spotting import spot_in_video
from client.run_model import RunModel
from client.spot_video import interval_record
from common.models import build_model
from simulations.synthetic.long_video import LongVideoSpec, write_long_video

MODEL = "ststnet"


def _pin_one_core() -> str:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def _decode_all(source: Path) -> int:
    return sum(1 for _ in iter_frames(source))


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=10.0, help="long video length")
    args = parser.parse_args()
    pinning = _pin_one_core()
    config = preprocess_config_for(MODEL, PreprocessConfig())
    model = build_model(MODEL, num_classes=3).eval()
    run = RunModel(model, MODEL, ["negative", "positive", "surprise"], config, True)

    with tempfile.TemporaryDirectory(prefix="fedmer-bench-") as tmp:
        root = Path(tmp)
        records = make_clips(root / "clips", args.clips)
        hidden = [dataclasses.replace(r, onset=1, apex=None) for r in records]
        per_clip: dict[str, list[float]] = {k: [] for k in ("decode", "annotated", "spotted")}
        inference = []
        for record, spotted in zip(records, hidden):
            per_clip["decode"].append(_median_ms(partial(_decode_all, record.source), 3))
            per_clip["annotated"].append(_median_ms(partial(process_clip, record, config), 3))
            per_clip["spotted"].append(_median_ms(partial(process_clip, spotted, config), 1))
            features, _, sequence = process_clip(record, config)
            _, inputs, _ = model_inputs([PreparedClip(record, features, sequence)], config)
            batch = torch.from_numpy(np.stack(inputs)).float()
            with torch.no_grad():
                inference.append(_median_ms(partial(model, batch), 20))

        spec = LongVideoSpec(seconds=args.seconds, num_expressions=max(1, int(args.seconds / 4)))
        video = root / "long.avi"
        write_long_video(video, spec)
        decode_s = _median_ms(partial(_decode_all, video), 2) / 1e3
        start = time.perf_counter()
        result = spot_in_video(video, get_detector(config.detector), flow_method=config.flow_method)
        spot_s = time.perf_counter() - start
        records_long = [interval_record(video, iv, i) for i, iv in enumerate(result.intervals)]
        start = time.perf_counter()
        classified = list(predict_clips(run, records_long))
        classify_s = time.perf_counter() - start

    decode = statistics.median(per_clip["decode"])
    infer = statistics.median(inference)
    print(f"{describe_machine()}; OpenCV {cv2.__version__}; one thread, {pinning}\n")
    print(
        f"**One clip** ({WIDTH}x{HEIGHT}, {FRAMES} frames, JPEG folder; median of {args.clips})\n"
    )
    print("| step | ms per clip | ratio to decode-only |")
    print("|---|---|---|")
    print(f"| decode all {FRAMES} frames (baseline) | {decode:.1f} | 1.00 |")
    for name, key in (("annotated apex", "annotated"), ("apex spotted", "spotted")):
        ms = statistics.median(per_clip[key])
        print(f"| preprocessing, {name} | {ms:.1f} | {ms / decode:.2f} |")
        print(f"| preprocessing, {name}, + inference | {ms + infer:.1f} | {(ms + infer) / decode:.2f} |")  # fmt: skip
    print(f"| inference alone ({MODEL}, batch 1) | {infer:.2f} | {infer / decode:.3f} |")
    frames = spec.num_frames
    print(f"\n**Long video** ({spec.width}x{spec.height}, {spec.fps} fps, {args.seconds:g} s, "
          f"{frames} frames, {spec.video_codec}; {len(result.intervals)} intervals spotted)\n")  # fmt: skip
    print("| step | frames/s | ratio of time to decode-only | × real time |")
    print("|---|---|---|---|")
    print(f"| decode (baseline) | {frames / decode_s:.0f} | 1.00 | {frames / decode_s / spec.fps:.1f} |")  # fmt: skip
    print(f"| spot intervals | {frames / spot_s:.0f} | {spot_s / decode_s:.2f} | {frames / spot_s / spec.fps:.2f} |")  # fmt: skip
    total = spot_s + classify_s
    print(f"| spot + classify every interval ({len(classified)}) | {frames / total:.0f} | "
          f"{total / decode_s:.2f} | {frames / total / spec.fps:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
