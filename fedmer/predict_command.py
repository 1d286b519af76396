"""``fedmer predict``: classify clips on this device with a finished run's model.

INPUT is a clip (a video file or a folder of frames; ``--onset``/``--apex``/
``--offset`` pick its frames, the apex is spotted when not given) or a
manifest CSV of many clips. With ``--spot``, INPUT is a long video: the
micro-expression intervals in it are spotted (onset, apex, offset), each is
classified, and the intervals go to the CSV and a PNG of the motion score
over time (``--truth`` adds the ground truth and scores the spotting at
IoU >= 0.5). Each clip is preprocessed exactly as the run's
training clips were (recorded in the run folder's ``preprocessing.json``);
asking for other preprocessing settings is refused. Prints each clip's class
probabilities and writes them to a CSV. Clips that cannot be used are listed
with their file and reason; the others go on. Nothing leaves the device.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client.run_model import RunModel


def register(commands: argparse._SubParsersAction) -> None:
    from client.preprocessing.features import ALIGNMENTS
    from client.preprocessing.optical_flow import FLOW_METHODS

    p = commands.add_parser(
        "predict",
        help="classify clips (video, frame folder or manifest) with a run's model, on this device",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input", type=Path, metavar="INPUT", help="video file, frame folder or manifest CSV"
    )
    p.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="a run folder (final_model.pt, results.json)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("predictions.csv"), help="CSV of per-clip probabilities"
    )
    p.add_argument(
        "--onset", type=int, help="onset frame number (a single clip; default: its first frame)"
    )
    p.add_argument("--apex", type=int, help="apex frame number (default: spotted)")
    p.add_argument("--offset", type=int, help="offset frame number (default: its last frame)")
    spot = p.add_argument_group("long videos")
    spot.add_argument(
        "--spot", action="store_true", help="INPUT is a long video: spot intervals, classify each"
    )
    spot.add_argument(
        "--fps", type=float, help="frame rate (needed for a frame folder; default: the video's)"
    )
    spot.add_argument(
        "--truth",
        type=Path,
        metavar="CSV",
        help="ground-truth intervals (onset, offset columns): scored at IoU >= 0.5",
    )
    spot.add_argument(
        "--plot", type=Path, help="PNG of the motion score (default: the CSV's name, .png)"
    )
    override = p.add_argument_group("preprocessing (must match the run's; default: the run's)")
    override.add_argument("--flow", choices=FLOW_METHODS)
    override.add_argument("--align", choices=ALIGNMENTS)
    override.add_argument("--detector")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.predict import Prediction, clips_from_input, predict_clips, write_predictions_csv
    from client.run_model import RunModelError, load_run_model

    overrides = {
        key: value
        for key, value in (
            ("flow_method", args.flow),
            ("alignment", args.align),
            ("detector", args.detector),
        )
        if value is not None
    }
    try:
        run_model = load_run_model(args.model, overrides)
    except (RunModelError, ValueError) as exc:
        print(f"fedmer predict: {exc}", file=sys.stderr)
        return 2
    if not run_model.recorded:
        print(
            f"[fedmer] {args.model} records no preprocessing.json; using fedmer's default "
            "preprocessing, which must be what its devices used",
            flush=True,
        )
    if args.spot:
        return _spot(args, run_model)
    records, skipped = clips_from_input(args.input, args.onset, args.apex, args.offset)
    predictions: list[Prediction] = []
    for outcome in predict_clips(run_model, records):
        if isinstance(outcome, Prediction):
            predictions.append(outcome)
            probabilities = "  ".join(
                f"{c} {p:.3f}" for c, p in zip(outcome.classes, outcome.probabilities)
            )
            print(f"{outcome.clip_id}: {outcome.predicted}  ({probabilities})", flush=True)
        else:
            skipped.append(outcome)
    for skip in skipped:
        print(f"skipped {skip.clip_id}: {skip.reason}", file=sys.stderr)
    write_predictions_csv(args.out, predictions, run_model.classes)
    print(f"[fedmer] {len(predictions)} clip(s) classified, {len(skipped)} skipped; {args.out}")
    return 0 if predictions else 1


def _spot(args: argparse.Namespace, run_model: RunModel) -> int:
    from client.datasets.clip_record import ClipError
    from client.spot_video import (
        plot_scores,
        read_ground_truth,
        spot_and_classify,
        write_intervals_csv,
    )
    from common.interval_metrics import score_spotting

    try:
        truth = read_ground_truth(args.truth) if args.truth else []
        result, classified = spot_and_classify(run_model, args.input, fps=args.fps)
    except (ClipError, ValueError, OSError) as exc:
        print(f"fedmer predict: {exc}", file=sys.stderr)
        return 1
    for i, item in enumerate(classified):
        iv, p = item.interval, item.prediction
        span = f"frames {iv.onset}-{iv.apex}-{iv.offset} ({iv.onset / result.fps:.2f} s)"
        if p is None:
            print(f"interval {i}: {span}: not classified: {item.skipped_reason}", flush=True)
            continue
        probabilities = "  ".join(f"{c} {x:.3f}" for c, x in zip(p.classes, p.probabilities))
        print(f"interval {i}: {span}: {p.predicted}  ({probabilities})", flush=True)
    write_intervals_csv(args.out, classified, run_model.classes, result.fps)
    plot = plot_scores(args.plot or args.out.with_suffix(".png"), result, classified, truth)
    print(
        f"[fedmer] {len(classified)} interval(s) spotted in {len(result.scores)} frames "
        f"({len(result.scores) / result.fps:.1f} s); {args.out}, {plot}"
    )
    if args.truth:
        score = score_spotting([(c.interval.onset, c.interval.offset) for c in classified], truth)
        print(
            f"[fedmer] against {args.truth}: TP {score.true_positives}, spotted {score.spotted}, "
            f"ground truth {score.ground_truth}: precision {score.precision:.3f}, recall "
            f"{score.recall:.3f}, F1 {score.f1:.3f} (IoU >= 0.5)"
        )
    return 0
