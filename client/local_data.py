"""The clips this device holds, turned into training tensors on the device.

A device finds its data through its node config (:mod:`common.node_config`):
``data-dir`` (holding a ``manifest.csv``) or ``manifest``, its ``role`` and
``device-id``. A device simulated by Flower's Simulation Runtime, which only
gets a ``partition-id``, reads the node config that the simulation harness
materialized for its partition, and then only its own data folder: no device
ever generates data or chooses its own role.

Features come from the device-local cache, computed on a miss. Nothing here
is ever sent anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from client.datasets.clip_record import ClipRecord, SkippedClip
from client.datasets.manifest import read_manifest
from client.feature_cache import FeatureCache
from client.model_inputs import model_inputs, preprocess_config_for
from client.prepare import prepare_clips, prepared_run_for
from client.preprocessing.features import PreprocessConfig
from common.labels import COMPOSITE_CLASSES
from common.models import input_shape_of
from common.node_config import (
    HELDOUT,
    TRAIN,
    NodeConfig,
    read_node_config,
    simulated_node_config_path,
)
from common.paths import fedmer_cache_root

__all__ = ["HELDOUT", "TRAIN", "LocalData", "device_node_config", "load_local_data"]


@dataclass(frozen=True)
class LocalData:
    """A device's prepared clips. Stays on the device."""

    device_id: str
    role: str
    features: np.ndarray
    labels: np.ndarray
    skipped: tuple[SkippedClip, ...] = field(default=())
    # Each clip's subject: the unit user-level DP-SGD samples and clips by.
    subjects: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_subjects(self) -> int:
        return len(set(self.subjects))

    def describe_emptiness(self) -> str:
        """Why this device has nothing to train on (for the server's log)."""
        if not self.skipped:
            return "no clips in the local data"
        reasons = "; ".join(f"{s.clip_id}: {s.reason}" for s in self.skipped[:3])
        more = f" (+{len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
        return f"no usable clips, {len(self.skipped)} skipped: {reasons}{more}"


def device_node_config(raw: dict[str, object] | NodeConfig, simulation_dir: str) -> NodeConfig:
    """The validated node config of this device (a simulated one's, from its folder)."""
    config = raw if isinstance(raw, NodeConfig) else NodeConfig.from_flower(raw)
    if not config.simulated_by_partition:
        return config
    if not simulation_dir:
        raise ValueError(
            f"simulated device partition-id={config.partition_id} has no data: the run "
            "config names no simulation-dir (run it through `fedmer simulate` or "
            "`python -m simulations.flwr_local`, which materialize the devices' folders)"
        )
    return read_node_config(simulated_node_config_path(Path(simulation_dir), config.partition_id))


def load_local_data(node: NodeConfig, model: str) -> LocalData:
    """This device's clips, from its own data folder, as inputs of ``model``."""
    manifest = node.manifest_path
    return _device_data(
        str(manifest), _modified(manifest), node.cache_dir, node.role, node.device_id, model
    )


def _modified(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0  # read_manifest says what is wrong with it


def feature_cache_for(manifest: Path, cache_dir: str = "") -> FeatureCache:
    """The device-local feature cache for a manifest."""
    if cache_dir:
        return FeatureCache(Path(cache_dir))
    return FeatureCache(fedmer_cache_root() / "features")


def preprocessing_for(manifest: Path, cache_dir: str = "") -> tuple[PreprocessConfig, FeatureCache]:
    """Settings and cache to prepare a manifest's clips with.

    A manifest written by ``fedmer prepare`` is trained on with exactly the
    settings and cache it was prepared with (anything else would miss the
    cache and compute different features); other manifests use the defaults.
    """
    prepared = prepared_run_for(manifest)
    if prepared is not None and not cache_dir:
        return prepared.config, prepared.cache
    config = prepared.config if prepared is not None else PreprocessConfig()
    return config, feature_cache_for(manifest, cache_dir)


# Memoized per process: a simulated device's worker, or a deployed device's
# warm worker, stays alive across rounds and is asked for its data on every
# message (census, train, evaluate), so the manifest and the cache are read
# once, not once per message; once again when the manifest is rewritten
# (``modified`` is its mtime).
@lru_cache(maxsize=32)
def _device_data(
    manifest: str, modified: int, cache_dir: str, role: str, device_id: str, model: str
) -> LocalData:
    manifest_path = Path(manifest)
    table = read_manifest(manifest_path)
    device_id = device_id or manifest_path.parent.name
    return _prepare(
        tuple(table.clips), tuple(table.skipped), manifest_path, cache_dir, role, device_id, model
    )


def _prepare(
    records: tuple[ClipRecord, ...],
    skipped: tuple[SkippedClip, ...],
    manifest: Path,
    cache_dir: str,
    role: str,
    device_id: str,
    model: str,
) -> LocalData:
    usable = [r for r in records if r.label in COMPOSITE_CLASSES]
    label_skips = tuple(
        SkippedClip(r.clip_id, f"label {r.label!r} is not one of {COMPOSITE_CLASSES}")
        for r in records
        if r.label not in COMPOSITE_CLASSES
    )
    base, cache = preprocessing_for(manifest, cache_dir)
    config = preprocess_config_for(model, base)
    result = prepare_clips(usable, config, cache, workers=1)
    ready, inputs, missing = model_inputs(result.ready, config)
    all_skipped = skipped + label_skips + tuple(result.skipped) + tuple(missing)
    if not ready:
        return LocalData(device_id, role, _empty_features(model), _empty_labels(), all_skipped)
    features = np.stack(inputs).astype(np.float32)
    labels = np.array([COMPOSITE_CLASSES.index(p.record.label) for p in ready], dtype=np.int64)
    subjects = tuple(p.record.subject for p in ready)
    return LocalData(device_id, role, features, labels, all_skipped, subjects)


def _empty_features(model: str) -> np.ndarray:
    return np.zeros((0, *input_shape_of(model)), dtype=np.float32)


def _empty_labels() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)
