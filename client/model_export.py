"""Export a run's model for an edge runtime: TorchScript or ONNX, plus its preprocessing manifest.

The exported folder holds everything an edge device needs besides its own
camera and fedmer's preprocessing code: the model (``model.ts`` or
``model.onnx``, batch dimension dynamic, logits out) and ``model.json``
(model name, classes, input shape, every preprocessing setting and its
fingerprint). ONNX export uses PyTorch's TorchScript-based exporter, whose
output onnxruntime runs; the check against the PyTorch model is
:func:`max_export_error`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from client.run_model import RunModel

FORMATS = ("torchscript", "onnx")
MANIFEST_FILE = "model.json"
_FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def export_model(run: RunModel, fmt: str, out_dir: Path) -> Path:
    """Write the model in ``fmt`` and its manifest into ``out_dir``; returns the model file."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / _FILES[fmt]
    example = torch.zeros((2, *run.input_shape))
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(run.model, example).save(str(target))
    else:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of one that
            # needs onnxscript; its output is what onnxruntime runs today.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                run.model,
                (example,),
                str(target),
                dynamo=False,
                input_names=["features"],
                output_names=["logits"],
                dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            )
    manifest = {**run.manifest(), "format": fmt, "file": target.name}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target


def run_exported(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of an exported model on ``inputs`` (onnxruntime for ONNX)."""
    path = Path(path)
    batch = np.ascontiguousarray(inputs, dtype=np.float32)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"features": batch})[0])
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(batch)).numpy()


def max_export_error(run: RunModel, path: Path, inputs: np.ndarray) -> float:
    """Largest difference between the exported and the PyTorch model's logits, relative
    to the logits' scale (max |logit|, at least 1): float32 kernels differ in the last bits."""
    with torch.no_grad():
        reference = run.model(torch.from_numpy(np.asarray(inputs, dtype=np.float32))).numpy()
    scale = max(1.0, float(np.max(np.abs(reference))))
    return float(np.max(np.abs(run_exported(path, inputs) - reference))) / scale
