"""A finished run's model, with the preprocessing it was trained on, for use on a device.

A run folder holds ``final_model.pt``, ``results.json`` (whose config names
the model) and, when the devices' preprocessing settings are known to the
tooling that wrote the folder (``fedmer simulate``), ``preprocessing.json``.
New clips must be preprocessed exactly as the training clips were, so
settings that differ from the recorded ones are refused, naming the first
that differs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from client.model_inputs import preprocess_config_for
from client.preprocessing.features import PreprocessConfig
from common.labels import COMPOSITE_CLASSES
from common.models import build_model, input_shape_of
from common.results_schema import MODEL_FILE, PREPROCESSING_FILE, RESULTS_FILE


class RunModelError(ValueError):
    """The run folder cannot give a usable model; the message names the file and the problem."""


@dataclass
class RunModel:
    model: nn.Module  # in eval mode
    name: str
    classes: list[str]
    preprocessing: PreprocessConfig
    recorded: bool  # the run folder recorded its preprocessing (else fedmer's defaults)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return input_shape_of(self.name)

    def manifest(self) -> dict[str, Any]:
        """What an edge runtime needs besides the weights."""
        return {
            "model": self.name,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "input": "u, v, optical strain of the onset->apex flow of the aligned face crop",
            "output": "logits (softmax gives class probabilities)",
            "preprocessing": self.preprocessing.to_dict(),
            "preprocessing_fingerprint": self.preprocessing.fingerprint(),
        }


def write_preprocessing(run_dir: Path, model: str, config: PreprocessConfig) -> Path:
    """Record, in a run folder, the preprocessing its devices used for ``model``."""
    path = Path(run_dir) / PREPROCESSING_FILE
    payload = {"model": model, "preprocessing": preprocess_config_for(model, config).to_dict()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def load_run_model(run_dir: Path, overrides: Mapping[str, Any] | None = None) -> RunModel:
    """The run's final model and preprocessing; ``overrides`` (PreprocessConfig field ->
    value) must equal the recorded settings, or they are refused naming the first that differs."""
    run_dir = Path(run_dir)
    results = read_run_file(run_dir / RESULTS_FILE)
    name = str(results.get("config", {}).get("model", ""))
    if not name:
        raise RunModelError(f"{run_dir / RESULTS_FILE}: config names no model")
    classes = [str(c) for c in results.get("classes") or COMPOSITE_CLASSES]
    weights = run_dir / MODEL_FILE
    if not weights.is_file():
        raise RunModelError(f"{weights}: no trained model in this run folder")
    model = build_model(name, num_classes=len(classes))
    try:
        model.load_state_dict(torch.load(weights, weights_only=True))
    except (RuntimeError, OSError, ValueError) as exc:
        raise RunModelError(f"{weights}: not a {name} state dict ({exc})") from exc
    model.eval()
    recorded_path = run_dir / PREPROCESSING_FILE
    recorded = None
    if recorded_path.is_file():
        values = read_run_file(recorded_path).get("preprocessing", {})
        try:
            recorded = PreprocessConfig(**values)
        except (TypeError, ValueError) as exc:
            raise RunModelError(f"{recorded_path}: {exc}") from exc
    config = recorded or preprocess_config_for(name, PreprocessConfig())
    if overrides:
        requested = preprocess_config_for(name, dataclasses.replace(config, **overrides))
        if recorded is not None:
            for f in fields(PreprocessConfig):
                if getattr(requested, f.name) != getattr(recorded, f.name):
                    raise RunModelError(
                        f"{recorded_path}: the model was trained with {f.name}="
                        f"{getattr(recorded, f.name)!r}, not {getattr(requested, f.name)!r}; "
                        "predictions on differently preprocessed clips would be meaningless"
                    )
        config = requested
    return RunModel(model, name, classes, config, recorded is not None)


def read_run_file(path: Path) -> dict[str, Any]:
    """A JSON object from a run folder; :class:`RunModelError` naming the file otherwise."""
    if not path.is_file():
        raise RunModelError(f"{path}: missing; is {path.parent} a fedmer run folder?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunModelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunModelError(f"{path}: expected a JSON object")
    return data
