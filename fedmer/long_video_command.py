"""``fedmer long-video``: write a synthetic long video with planted micro-expressions.

One subject on a 640x480 frame for ``--seconds``, with ``--num-expressions``
micro-expressions (the ground truth, ``OUT.intervals.csv``) among
distractors a spotter must ignore: blinks, sustained head moves and head
jitter (``OUT.json`` records each). For trying ``fedmer predict --spot`` and
scoring it (``--truth OUT.intervals.csv``) without licensed data.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    from simulations.synthetic.long_video import LongVideoSpec

    d = LongVideoSpec()
    p = commands.add_parser(
        "long-video",
        help="write a synthetic long video with planted micro-expressions and distractors",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", type=Path, metavar="OUT", help="video file to write (.avi)")
    p.add_argument("--seconds", type=float, default=d.seconds)
    p.add_argument("--fps", type=int, default=d.fps)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--face-width", type=int, default=d.face_width)
    p.add_argument("--num-expressions", type=int, default=d.num_expressions)
    p.add_argument("--min-gap-seconds", type=float, default=d.min_gap_seconds)
    p.add_argument("--blinks-per-second", type=float, default=d.blinks_per_second)
    p.add_argument("--num-head-moves", type=int, default=d.num_head_moves)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--video-codec", default=d.video_codec, help="fourcc")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from simulations.synthetic.long_video import LongVideoSpec, write_long_video

    spec = LongVideoSpec(
        seconds=args.seconds,
        fps=args.fps,
        width=args.width,
        height=args.height,
        face_width=args.face_width,
        num_expressions=args.num_expressions,
        min_gap_seconds=args.min_gap_seconds,
        blinks_per_second=args.blinks_per_second,
        num_head_moves=args.num_head_moves,
        seed=args.seed,
        video_codec=args.video_codec,
    )
    plan = write_long_video(args.out, spec)
    print(
        f"[fedmer] {args.out}: {spec.num_frames} frames, {len(plan.expressions)} expressions, "
        f"{len(plan.blinks)} blinks, {len(plan.head_moves)} head moves; ground truth "
        f"{args.out.with_suffix('.intervals.csv')}"
    )
    return 0
