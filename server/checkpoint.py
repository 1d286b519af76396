"""Server checkpoints: after every round, everything needed to resume.

Server side. A checkpoint holds the global model, the number of the last
completed round, the strategy's state, the client-level accountant's state
(an opaque dict owned by the privacy code), the server ledger's position, and
the results so far. A restarted ServerApp loads the latest checkpoint and
resumes at the next round, so no round is repeated and no ε is counted twice;
a round checkpointed before its held-out evaluation came back is evaluated
first.

Layout under ``<out-dir>/checkpoints/``::

    round-0003.npz    global model arrays (numpy, no pickle)
    round-0003.json   round, states, sha256 of the .npz, config fingerprint
    latest.json       {"round": 3, "file": "round-0003.json"}  <- commit point

Each file is written atomically (temporary file, fsync, rename) and
``latest.json`` last, so a crash at any moment leaves the previous checkpoint
intact; a checkpoint whose model file does not match its hash is skipped in
favour of the newest one that does.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic_io import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
FORMAT_VERSION = 1
# Keys that may change between the crashed run and its resumption.
RESUMABLE_CHANGES = ("num-server-rounds", "round-timeout", "out-dir", "min-nodes")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used to resume this run."""


@dataclass
class Checkpoint:
    round: int
    arrays: dict[str, np.ndarray]
    strategy: dict[str, Any] = field(default_factory=dict)
    client_accountant: dict[str, Any] = field(default_factory=dict)
    ledger_position: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    config_fingerprint: str = ""
    # The training part of a round whose held-out evaluation had not come back
    # (it rides with the next round's training); empty when the round is complete.
    pending_evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def next_round(self) -> int:
        return self.round + 1


def config_fingerprint(
    run_config: Mapping[str, Any], ignore: Iterable[str] = RESUMABLE_CHANGES
) -> str:
    """A hash of the run config, without the keys a resumed run may change."""
    skip = set(ignore)
    payload = {k: run_config[k] for k in sorted(run_config) if k not in skip}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class CheckpointStore:
    """Save and load checkpoints in one run folder."""

    def __init__(self, out_dir: Path, keep: int = 3):
        self.directory = Path(out_dir) / CHECKPOINT_DIR
        self.keep = max(1, keep)

    def save(self, checkpoint: Checkpoint) -> Path:
        """Persist one completed round; returns the metadata file."""
        if checkpoint.round < 1:
            raise ValueError("only completed rounds (>= 1) are checkpointed")
        stem = f"round-{checkpoint.round:04d}"
        buffer = io.BytesIO()
        names = list(checkpoint.arrays)
        arrays = {f"a{i}": np.asarray(checkpoint.arrays[n]) for i, n in enumerate(names)}
        # allow_pickle is numpy's default, named so that no array name can take its place.
        np.savez(buffer, allow_pickle=True, **arrays)
        blob = buffer.getvalue()
        write_bytes_atomic(self.directory / f"{stem}.npz", blob)
        meta = {
            "format": FORMAT_VERSION,
            "round": checkpoint.round,
            "array_names": names,
            "model_file": f"{stem}.npz",
            "model_sha256": hashlib.sha256(blob).hexdigest(),
            "strategy": checkpoint.strategy,
            "client_accountant": checkpoint.client_accountant,
            "ledger_position": checkpoint.ledger_position,
            "results": checkpoint.results,
            "config_fingerprint": checkpoint.config_fingerprint,
            "pending_evaluation": checkpoint.pending_evaluation,
        }
        meta_path = self.directory / f"{stem}.json"
        write_json_atomic(meta_path, meta)
        write_json_atomic(
            self.directory / LATEST, {"round": checkpoint.round, "file": meta_path.name}
        )
        self._prune()
        return meta_path

    def latest(self, expected_fingerprint: str | None = None) -> Checkpoint | None:
        """The newest intact checkpoint, or ``None`` for a fresh run.

        Raises :class:`CheckpointError` when the newest intact checkpoint was
        made with a different run config (resuming would mix two experiments).
        """
        for meta_path in self._candidates():
            try:
                checkpoint = self._load(meta_path)
            except (OSError, ValueError, KeyError, CheckpointError) as exc:
                log.warning("checkpoint %s is unusable (%s); trying an older one", meta_path, exc)
                continue
            if (
                expected_fingerprint
                and checkpoint.config_fingerprint
                and (checkpoint.config_fingerprint != expected_fingerprint)
            ):
                raise CheckpointError(
                    f"{meta_path} was written by a run with a different run config; "
                    "use a new out-dir, or restore the original config to resume"
                )
            return checkpoint
        return None

    def _candidates(self) -> list[Path]:
        found = sorted(self.directory.glob("round-*.json"), reverse=True)
        pointer = self.directory / LATEST
        if pointer.exists():
            try:
                named = self.directory / json.loads(pointer.read_text())["file"]
                # The pointer is written last, so rounds newer than it were never committed.
                found = [named] + [p for p in found if p.name < named.name]
            except (OSError, ValueError, KeyError):
                pass
        return found

    def _load(self, meta_path: Path) -> Checkpoint:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise CheckpointError(f"unknown checkpoint format {meta.get('format')!r}")
        blob = (self.directory / meta["model_file"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["model_sha256"]:
            raise CheckpointError("model file does not match its recorded hash")
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {n: data[f"a{i}"] for i, n in enumerate(meta["array_names"])}
        return Checkpoint(
            round=int(meta["round"]),
            arrays=arrays,
            strategy=meta.get("strategy", {}),
            client_accountant=meta.get("client_accountant", {}),
            ledger_position=meta.get("ledger_position", {}),
            results=meta.get("results", {}),
            config_fingerprint=meta.get("config_fingerprint", ""),
            pending_evaluation=meta.get("pending_evaluation", {}),
        )

    def _prune(self) -> None:
        metas = sorted(self.directory.glob("round-*.json"))
        for old in metas[: -self.keep]:
            old.with_suffix(".npz").unlink(missing_ok=True)
            old.unlink(missing_ok=True)


def arrays_from_record(record: Any) -> dict[str, np.ndarray]:
    """Flower ``ArrayRecord`` -> ordered ``{name: ndarray}``."""
    return {name: arr.numpy() for name, arr in record.items()}


def record_from_arrays(arrays: Mapping[str, np.ndarray]) -> Any:
    """Ordered ``{name: ndarray}`` -> Flower ``ArrayRecord`` with the same names."""
    import torch
    from flwr.app import ArrayRecord

    return ArrayRecord({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
