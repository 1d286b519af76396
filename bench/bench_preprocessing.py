"""Benchmark: on-device preprocessing throughput against decoding alone.

Clips: 640x480, 60 frames, JPEG frame folders as CASME II ships them, rendered
from the synthetic cohort (a real face with a real micro-movement, so the
detector, eye finder and flow do their normal amount of work).

Measured, all with both cores (2 worker processes), from a cold feature cache:

* decode only: read all 60 frames of every clip (the lower bound: no
  preprocessing can be faster than reading its input);
* full, apex spotted: decode all 60 frames, detect, crop, spot the apex
  (flow onset -> every frame), flow, strain, features, cache write (the SMIC
  path; the one that does full work on every frame, so the one compared with
  decode-only);
* full, annotated apex: validate, decode onset + apex only (frame folders
  allow it), detect, crop, flow, features, cache write (the CASME II / SAMM
  path; it can beat "decode only" because it decodes 2 frames, not 60);
* full, spotted + eye alignment.

Prints a Markdown table; ratios are within one run.  Run:

    .venv/bin/python -m bench.bench_preprocessing [--clips 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from bench.machine import describe_machine
from client.datasets.clip_record import ClipRecord
from client.datasets.frames import iter_frames
from client.feature_cache import FeatureCache
from client.prepare import prepare_clips
from client.preprocessing.features import PreprocessConfig
from simulations.synthetic import CohortSpec, subject_clips
from simulations.synthetic.writer import write_frames

WIDTH, HEIGHT, FRAMES = 640, 480, 60


def make_clips(root: Path, count: int) -> list[ClipRecord]:
    """`count` 640x480x60 clips: 480x480 synthetic renders centred on a 640x480 frame."""
    spec = CohortSpec(
        num_subjects=max(1, count // 3), clips_per_class=1, canvas=HEIGHT, face_width=230, seed=11
    )
    records: list[ClipRecord] = []
    for s in range(spec.num_subjects):
        for clip in subject_clips(spec, s):
            if len(records) == count:
                return records
            frames = list(clip.frames[:FRAMES]) + [clip.frames[-1]] * max(
                0, FRAMES - len(clip.frames)
            )
            pad = (WIDTH - HEIGHT) // 2
            wide = np.stack(
                [cv2.copyMakeBorder(f, 0, 0, pad, pad, cv2.BORDER_REPLICATE) for f in frames]
            )
            folder = write_frames(root / clip.name, wide, first_number=1)[0].parent
            p = clip.plan
            apex = min(p.apex, FRAMES - 2) + 1
            records.append(ClipRecord("bench", f"bench/{clip.subject}", f"bench/{clip.name}", folder,
                                      min(p.onset + 1, apex - 1), apex, FRAMES, clip.label, 100.0))  # fmt: skip
    return records


def _decode(record: ClipRecord) -> int:
    return sum(1 for _ in iter_frames(record.source))


def _init() -> None:
    cv2.setNumThreads(1)


def decode_only(records: list[ClipRecord], workers: int) -> None:
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init) as pool:
        assert sum(pool.map(_decode, records)) == len(records) * FRAMES


def timed(run) -> tuple[float, float]:
    """Wall seconds and CPU seconds (own + finished worker processes).

    CPU time is reported too because it is far less sensitive than wall time to
    other jobs sharing the machine: under contention the workers wait, but do
    not burn more CPU."""
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum((a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime) for a, b in zip(after, before))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fedmer-bench-") as tmp:
        root = Path(tmp)
        records = make_clips(root / "clips", args.clips)
        # As in SMIC: no apex label, the clip runs from its first to its last
        # frame, so all 60 frames are decoded and spotted over.
        hidden = [dataclasses.replace(r, onset=1, apex=None) for r in records]
        runs = {
            "decode only (60 frames)": lambda: decode_only(records, args.workers),
            "full, annotated apex": lambda: _prepare(
                records, PreprocessConfig(), root / "c1", args.workers
            ),
            "full, apex spotted": lambda: _prepare(
                hidden, PreprocessConfig(), root / "c2", args.workers
            ),
            "full, spotted + eye alignment": lambda: _prepare(
                hidden, PreprocessConfig(alignment="eyes"), root / "c3", args.workers
            ),
        }
        decode_only(records[:2], args.workers)  # warm the page cache and imports
        results = {name: timed(run) for name, run in runs.items()}

    base_wall, base_cpu = results["decode only (60 frames)"]
    print(f"{args.clips} clips of {WIDTH}x{HEIGHT}x{FRAMES} (JPEG folders), {args.workers} workers, "
          f"OpenCV {cv2.__version__}; {describe_machine()}\n")  # fmt: skip
    print(
        "| run | clips/s (wall) | CPU s per clip | busy cores | time ratio to decode-only (wall) | (CPU) |"
    )
    print("|---|---|---|---|---|---|")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {args.clips / wall:.2f} | {cpu / args.clips:.3f} | {cpu / wall:.2f} "
              f"| {wall / base_wall:.2f} | {cpu / base_cpu:.2f} |")  # fmt: skip
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _prepare(
    records: list[ClipRecord], config: PreprocessConfig, cache: Path, workers: int
) -> None:
    result = prepare_clips(records, config, FeatureCache(cache), workers=workers)
    assert not result.skipped, result.summary()


if __name__ == "__main__":
    main()
