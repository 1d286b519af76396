"""The ``results.json`` contract and the files a run leaves behind.

Later tooling reads these keys:

* ``rounds``: ``round``, ``uf1``, ``uar``, ``accuracy``, ``epsilon`` (the
  maximum over devices of cumulative sample-level epsilon), and more;
* ``final``: ``uf1``, ``uar``, ``accuracy``, ``confusion`` of the last round
  (never a round picked by looking at held-out scores);
* ``privacy``: per-device sigma, q, steps, delta, epsilon (RDP), epsilon_prv
  and the subject-level conversion; ``client_level``: the DP-FedAvg guarantee;
* ``config``: the run config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.atomic_io import write_bytes_atomic, write_json_atomic
from common.results_schema import MODEL_FILE, RESULTS_FILE, RESULTS_SCHEMA

FINAL_KEYS = ("round", "uf1", "uar", "accuracy", "confusion", "released", "heldout_devices")
PLOT_FILE = "rounds.png"

PRIVACY_NOTE = (
    "epsilon is sample-level (per clip) DP-SGD, cumulative over all rounds, "
    "reported by the RDP accountant (epsilon_prv: PRV second opinion), and "
    "holds against the coordinator too: batches are sampled and noise drawn "
    "from each device's secret random source. It is not subject-level: a "
    "subject with k clips is a group of k records. Held-out metrics are "
    "computed from Gaussian-noised counts, each device accounting for them in "
    "its own ledger. client_level is a separate guarantee for a device's whole "
    "participation."
)


@dataclass
class RunResults:
    config: dict[str, Any]
    classes: list[str]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, Any] = field(default_factory=dict)
    client_level: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    # Why this run's figures protect no one (seeded sampling, DP-SGD off); empty = private.
    not_private_because: list[str] = field(default_factory=list)

    def add_round(self, entry: dict[str, Any]) -> None:
        self.rounds.append(entry)

    def to_json(self) -> dict[str, Any]:
        last = self.rounds[-1] if self.rounds else {}
        final = {k: last.get(k) for k in FINAL_KEYS}
        return {
            "schema": RESULTS_SCHEMA,
            "config": self.config,
            "classes": self.classes,
            "rounds": self.rounds,
            "final": final,
            "privacy": {
                "unit": "sample-level (one clip)",
                "private": not self.not_private_because,
                "not_private_because": self.not_private_because,
                "accountant": "rdp",
                "note": PRIVACY_NOTE,
                "worst_epsilon": max((d["epsilon"] for d in self.privacy.values()), default=0.0),
                "devices": self.privacy,
                "client_level": self.client_level,
            },
            "devices": self.devices,
            "stopped": self.stopped,
        }

    def save(self, out_dir: Path) -> Path:
        path = out_dir / RESULTS_FILE
        write_json_atomic(path, self.to_json())
        return path


def save_model(state_dict: dict[str, torch.Tensor], out_dir: Path, name: str = MODEL_FILE) -> Path:
    """Save a model state dict atomically."""
    import io

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    path = out_dir / name
    write_bytes_atomic(path, buffer.getvalue())
    return path
