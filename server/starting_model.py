"""The starting model of a run: random from the seed, or pretrained on public data.

Pretraining on public data costs no privacy, so a run may start from weights
trained elsewhere (``initial-model``). The coordinator loads them, checks that
they fit the run's model, and records where they came from: the
``pretraining.json`` written beside them (what data, which subjects and
seeds), plus the weights' own SHA-256, so a reader of ``results.json`` can see
that the start was not trained on any device's subjects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRETRAINING_FILE = "pretraining.json"


def load_starting_model(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load ``path`` into ``model``; returns the record of where the weights came from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"initial-model {path}: no such file")
    raw = path.read_bytes()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"initial-model {path}: not a state dict of this model: {exc}") from None
    record: dict[str, Any] = {}
    sidecar = path.parent / PRETRAINING_FILE
    if sidecar.is_file():
        record = json.loads(sidecar.read_text())
    return {**record, "weights": str(path), "weights_sha256": hashlib.sha256(raw).hexdigest()}
