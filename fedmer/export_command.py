"""``fedmer export``: a run's model for an edge runtime (TorchScript or ONNX) plus its manifest.

Writes ``model.ts`` or ``model.onnx`` and ``model.json`` (model, classes,
input shape, every preprocessing setting) into ``--out``, and checks that
the exported model's logits equal the PyTorch model's (to 1e-5 of the
logit scale) on random inputs before it says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOLERANCE = 1e-5


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="export a run's model (TorchScript or ONNX) with its preprocessing manifest",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/export-FORMAT)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from client.model_export import export_model, max_export_error
    from client.run_model import RunModelError, load_run_model

    try:
        run_model = load_run_model(args.run_dir)
    except RunModelError as exc:
        print(f"fedmer export: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / f"export-{args.format}"
    try:
        path = export_model(run_model, args.format, out)
    except ImportError as exc:
        print(f"fedmer export: {exc}; install fedmer[edge] for ONNX", file=sys.stderr)
        return 2
    # Normalized features lie in [-1, 1] (robust-max scaling).
    inputs = np.random.default_rng(0).uniform(-1, 1, size=(4, *run_model.input_shape))
    error = max_export_error(run_model, path, inputs)
    if error > TOLERANCE:
        print(
            f"fedmer export: {path} differs from the PyTorch model by {error:.3g} of the logit scale",
            file=sys.stderr,
        )
        return 1
    print(
        f"[fedmer] exported {run_model.name} to {path} (max |Δ logit| / logit scale {error:.2g}); manifest {out / 'model.json'}"
    )
    return 0
