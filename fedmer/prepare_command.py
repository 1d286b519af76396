"""``fedmer prepare``: turn a dataset, as its publisher ships it, into training tensors.

Reads the dataset (official spreadsheet and folders, or a generic manifest),
maps labels to the chosen scheme, preprocesses every clip on this device (both
cores, progress bar) into a feature cache, and writes next to that cache a
normalized generic ``manifest.csv`` of the clips that are ready, so that
``fedmer simulate --data OUT/manifest.csv`` trains on them.  ``prepare.json``
records the dataset, scheme, every preprocessing setting and each skipped clip
with its reason.  Nothing leaves the device.  Rerunning resumes from the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    from client.datasets.label_schemes import SCHEMES
    from client.datasets.registry import KINDS
    from client.preprocessing.features import ALIGNMENTS, PreprocessConfig
    from client.preprocessing.optical_flow import FLOW_METHODS

    defaults = PreprocessConfig()
    p = commands.add_parser(
        "prepare",
        help="read a dataset (CASME II, SAMM, SMIC, CAS(ME)^3, MMEW, 4DME or a manifest) and preprocess it on this device",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "root", type=Path, help="dataset root as shipped (or a manifest CSV / its folder)"
    )
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="dataset kind; auto detects it from the layout",
    )
    p.add_argument(
        "--scheme",
        choices=SCHEMES,
        default="composite",
        help="labels: the dataset's own classes, or the MEGC2019 composite (others dropped)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder for manifest.csv, prepare.json and cache/ (default: ./prepared/<kind>)",
    )
    p.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="preprocessing processes"
    )
    p.add_argument(
        "--align", choices=ALIGNMENTS, default=defaults.alignment, help="eye-based face alignment"
    )
    p.add_argument(
        "--flow", choices=FLOW_METHODS, default=defaults.flow_method, help="optical flow algorithm"
    )
    p.add_argument(
        "--detector",
        default=defaults.detector,
        help="face detector (haar, or yunet with --detector-model)",
    )
    p.add_argument(
        "--detector-model", default="", help="model file for --detector yunet (never downloaded)"
    )
    p.add_argument(
        "--skip-detection",
        action="store_true",
        help="frames are already face crops (implied by casme2-cropped)",
    )
    p.add_argument(
        "--magnify",
        type=float,
        default=defaults.magnification_alpha,
        help="Eulerian motion magnification factor (0 = off)",
    )
    p.add_argument(
        "--sequence-length",
        type=int,
        default=defaults.sequence_length,
        help="also cache fixed-length flow sequences of this many frames (0 = off)",
    )
    p.add_argument("--face-size", type=int, default=defaults.face_size)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.datasets.label_schemes import apply_scheme
    from client.datasets.manifest import ManifestError, write_manifest
    from client.datasets.registry import read_dataset, reader_for
    from client.feature_cache import FeatureCache
    from client.prepare import PREPARE_REPORT, prepare_clips
    from client.preprocessing.features import PreprocessConfig

    try:
        kind, table = read_dataset(args.root, args.kind)
    except ManifestError as error:
        print(f"[fedmer] error: {error}", flush=True)
        return 2
    reader = reader_for(kind)
    try:
        config = PreprocessConfig(
            face_size=args.face_size,
            flow_method=args.flow,
            detector=args.detector,
            detector_model=args.detector_model,
            skip_detection=args.skip_detection or bool(reader and reader.pre_cropped),
            alignment=args.align,
            magnification_alpha=args.magnify,
            sequence_length=args.sequence_length,
        )
        config.make_detector()  # a missing model file is an error now, not one per clip
    except (ValueError, OSError, RuntimeError) as error:
        print(f"[fedmer] error: {error}", flush=True)
        return 2

    out = (args.out or Path("prepared") / kind).resolve()
    records, dropped = apply_scheme(table.clips, args.scheme)
    print(
        f"[fedmer] {kind}: {len(table.clips)} clip(s) read from {table.path}, {len(table.skipped)} row(s) skipped; "
        f"{len(records)} in the {args.scheme} scheme",
        flush=True,
    )
    for count in table.row_counts:
        print(f"[fedmer]   {count}", flush=True)
    if table.repaired:
        print(f"[fedmer] {len(table.repaired)} annotation slip(s) repaired:", flush=True)
        for repair in table.repaired:
            print(f"    - {repair.note}", flush=True)
    result = prepare_clips(
        records,
        config,
        FeatureCache(out / "cache"),
        workers=args.workers,
        progress=not args.no_progress,
    )
    skipped = [*table.skipped, *dropped, *result.skipped]
    manifest = write_manifest(out / "manifest.csv", [p.record for p in result.ready])
    _write_report(out / PREPARE_REPORT, args, kind, config, result, skipped, table)

    result.skipped = skipped  # the summary covers reading, labels and preprocessing
    print(f"[fedmer] {result.summary()}", flush=True)
    print(
        f"[fedmer] manifest: {manifest}\n[fedmer] train with: fedmer simulate --data {manifest}",
        flush=True,
    )
    return 0 if result.ready else 1


def _write_report(
    path: Path, args: argparse.Namespace, kind: str, config, result, skipped, table
) -> None:
    from common.atomic_io import write_json_atomic

    report = {
        "format": "fedmer-prepare",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "root": str(args.root.resolve()),
        "kind": kind,
        "scheme": args.scheme,
        "config": config.to_dict(),
        "config_fingerprint": config.fingerprint(),
        "cache": str(path.parent / "cache"),
        "ready": len(result.ready),
        "cache_hits": result.cache_hits,
        "computed": result.computed,
        "skipped": [dataclasses.asdict(s) for s in skipped],
        "repaired": [dataclasses.asdict(r) for r in table.repaired],
        "sheet_rows": [
            {"sheet": str(c.path), "read": c.read, "present": c.present} for c in table.row_counts
        ],
    }
    write_json_atomic(path, report)
