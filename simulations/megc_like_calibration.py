"""Calibrate the megc-like benchmark: centralized models under LOSO on the composite.

One command does what a researcher would do with the real releases:

1. ``fedmer megc-like``: write the three labs (skipped when already there);
2. ``fedmer prepare``: read them as a composite, preprocess every clip on
   this machine (face detection, flow, strain);
3. ``fedmer evaluate --mode centralized --protocol composite``: leave one
   subject out over all 68 subjects, confusion counts pooled over folds, for
   each model; UF1 and UAR overall and per lab.

The results land in ``OUT/calibration.json`` and as a Markdown table on stdout.

    python -m simulations.megc_like_calibration --out runs/megc-like [--folds 6] [knob flags]

``--folds N`` (grouped subjects instead of LOSO) is for quick looks while
changing a knob; the figure in ``docs/results.md`` is full LOSO.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("ststnet", "off_apexnet")


def fedmer(args: list[str]) -> int:
    """Run one ``fedmer`` command as a user would (a process of its own; its output shown)."""
    return subprocess.run([sys.executable, "-m", "fedmer.cli", *args], check=False).returncode


def calibrate(
    out: Path,
    knobs: list[str],
    folds: int | None,
    models: tuple[str, ...],
    epochs_rounds: int,
    workers: int,
) -> dict:
    cohort, prepared = out / "cohort", out / "prepared"
    started = time.perf_counter()
    if fedmer(["megc-like", str(cohort), "--workers", str(workers), "--no-progress", *knobs]):
        raise SystemExit("megc-like generation failed")
    if fedmer(
        ["prepare", str(cohort), "--out", str(prepared), "--workers", str(workers), "--no-progress"]
    ):
        raise SystemExit("prepare failed")
    report: dict = {"knobs": knobs, "folds": folds or "loso", "models": {}}
    for model in models:
        run = out / f"centralized-{model}"
        args = [
            "evaluate", "--mode", "centralized", "--protocol", "composite",
            "--data-manifest", str(prepared / "manifest.csv"), "--model", model,
            "--num-server-rounds", str(epochs_rounds), "--out-dir", str(run),
            "--workers", str(workers),
        ]  # fmt: skip
        if folds:
            args += ["--folds", str(folds)]
        if fedmer(args):
            raise SystemExit(f"evaluate {model} failed")
        summary = json.loads((run / "protocol.json").read_text())
        report["models"][model] = {
            "uf1": summary["pooled"]["uf1"],
            "uar": summary["pooled"]["uar"],
            "per_lab": {
                k: {"uf1": v["uf1"], "uar": v["uar"]} for k, v in summary["per_dataset"].items()
            },
            "folds": summary["num_folds"],
            "clips": summary["pooled"]["num_clips"],
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def table(report: dict) -> str:
    labs = sorted(next(iter(report["models"].values()))["per_lab"])
    head = "| model | UF1 | UAR | " + " | ".join(f"{lab} UF1 / UAR" for lab in labs) + " |"
    rows = [head, "|" + "---|" * (3 + len(labs))]
    for model, m in report["models"].items():
        cells = [f"{m['per_lab'][lab]['uf1']:.3f} / {m['per_lab'][lab]['uar']:.3f}" for lab in labs]
        rows.append(f"| {model} | {m['uf1']:.4f} | {m['uar']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=None, help="grouped-subject folds (default: LOSO)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--num-server-rounds", type=int, default=6, help="centralized epochs / 2")
    p.add_argument("--workers", type=int, default=2)
    args, knobs = p.parse_known_args(argv)
    report = calibrate(
        args.out,
        knobs,
        args.folds,
        tuple(args.models.split(",")),
        args.num_server_rounds,
        args.workers,
    )
    print(table(report))
    print(
        f"({report['folds']} folds, {report['seconds']} s; knobs: {' '.join(knobs) or 'defaults'})"
    )


if __name__ == "__main__":
    main()
