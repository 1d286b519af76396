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
from common.privacy.person_level import narrowest
from common.results_schema import MODEL_FILE, RESULTS_FILE, RESULTS_SCHEMA

FINAL_KEYS = ("round", "uf1", "uar", "accuracy", "confusion", "released", "heldout_devices")
PLOT_FILE = "rounds.png"

PRIVACY_NOTE = (
    "person_level is the headline: for each device, the (ε, δ) its ledger gives "
    "each of its subjects, recomputed by the coordinator from the (σ, q, steps) "
    "of the signed entries the device sent in this run (a device that also spent "
    "in earlier runs carries that too: audit its own ledger). It is finite only "
    "when every spend protects a whole subject (user-level DP-SGD, dp-sgd-subject; "
    "held-out counts at subject sensitivity, gaussian-counts-subject) and holds "
    "against everyone, the coordinator included: subjects are sampled and noise "
    "drawn from each device's secret random source. devices.*.epsilon is the "
    "device's own cumulative figure in its mechanism's unit (per clip for dp-sgd, "
    "per subject for dp-sgd-subject), by the RDP accountant (epsilon_prv: PRV "
    "second opinion). A training device its operator declared single-person (a "
    "phone) is also protected by the coordinator's client-level DP-FedAvg releases, "
    "recomputed from their signed (σ, q); where that figure leads, its 'against' says "
    "it does not hold against the coordinator, and against_coordinator gives the one "
    "that does. Held-out metrics are computed from Gaussian-noised counts, "
    "each device accounting for them in its own ledger. client_level is a "
    "separate guarantee for a device's whole participation."
)


@dataclass
class RunResults:
    config: dict[str, Any]
    classes: list[str]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, Any] = field(default_factory=dict)
    client_level: dict[str, Any] = field(default_factory=dict)
    # device id -> PersonLevel.as_dict(), from the kept ledger entries.
    person_level: dict[str, Any] = field(default_factory=dict)
    # The held-out evaluation of the starting model, before any federated round.
    round_0: dict[str, Any] = field(default_factory=dict)
    # Where the starting model came from (public pretraining), when not random.
    pretraining: dict[str, Any] = field(default_factory=dict)
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
            "round_0": self.round_0,
            "pretraining": self.pretraining,
            "privacy": {
                "unit": "person (subject) in headline and person_level; devices.* in "
                "each mechanism's own unit",
                "headline": person_headline(self.person_level, self.not_private_because),
                "person_level": self.person_level,
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


def worst_person_epsilon(person_level: dict[str, Any]) -> float:
    """The largest person-level ε of any device (0 before anything was spent)."""
    return max((float(p["epsilon"]) for p in person_level.values()), default=0.0)


def person_headline(person_level: dict[str, Any], not_private_because: list[str]) -> dict[str, Any]:
    """The worst person-level (ε, δ), the device it belongs to, and against whom it holds."""
    if not person_level:
        return {"unit": "person (subject)", "epsilon": 0.0, "delta": None, "device": None}
    device, worst = max(person_level.items(), key=lambda kv: float(kv[1]["epsilon"]))
    epsilon = float(worst["epsilon"]) if not not_private_because else float("inf")
    return {
        "unit": "person (subject)",
        "epsilon": epsilon,
        "delta": max(float(p["delta"]) for p in person_level.values()),
        "device": device,
        # Every device's figure holds against at least these (the worst one's may hold wider).
        "against": narrowest([str(p["against"]) for p in person_level.values()]),
        # The worst figure that also holds against the coordinator.
        "against_coordinator_epsilon": (
            max(float(p.get("against_coordinator", p["epsilon"])) for p in person_level.values())
            if not not_private_because
            else float("inf")
        ),
        "devices": len(person_level),
    }


def save_model(state_dict: dict[str, torch.Tensor], out_dir: Path, name: str = MODEL_FILE) -> Path:
    """Save a model state dict atomically."""
    import io

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    path = out_dir / name
    write_bytes_atomic(path, buffer.getvalue())
    return path
