"""The clips this device holds, turned into training tensors on the device.

A device finds its data in one of two ways:

* deployment: the SuperNode's node config names ``data-dir`` (holding a
  ``manifest.csv``) or ``manifest``, plus an optional ``role``;
* simulation: Flower gives ``partition-id``; the device takes the subject that
  :func:`simulations.partitions.split_subjects` assigns to that partition.

Features come from the device-local cache, computed on a miss. Nothing here
is ever sent anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from client.datasets.clip_record import ClipRecord, SkippedClip
from client.datasets.manifest import read_manifest
from client.feature_cache import FeatureCache
from client.prepare import prepare_clips, prepared_run_for
from client.preprocessing.features import PreprocessConfig
from common.labels import COMPOSITE_CLASSES
from common.paths import fedmer_cache_root
from common.run_config import RunConfig

TRAIN, HELDOUT, IDLE = "train", "heldout", "idle"


@dataclass(frozen=True)
class LocalData:
    """A device's prepared clips. Stays on the device."""

    device_id: str
    role: str
    features: np.ndarray
    labels: np.ndarray
    skipped: tuple[SkippedClip, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.labels)

    def describe_emptiness(self) -> str:
        """Why this device has nothing to train on (for the server's log)."""
        if self.role == IDLE:
            return "no subject assigned to this device"
        if not self.skipped:
            return "no clips in the local data"
        reasons = "; ".join(f"{s.clip_id}: {s.reason}" for s in self.skipped[:3])
        more = f" (+{len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
        return f"no usable clips, {len(self.skipped)} skipped: {reasons}{more}"


def load_local_data(node_config: Mapping[str, object], cfg: RunConfig) -> LocalData:
    """Prepared clips of this device, from its node config and the run config."""
    if "partition-id" in node_config:
        return _simulated_device_data(int(node_config["partition-id"]), cfg)
    return _deployed_device_data(
        data_dir=str(node_config.get("data-dir", "")),
        manifest=str(node_config.get("manifest", "")),
        cache_dir=str(node_config.get("cache-dir", "")),
        role=str(node_config.get("role", TRAIN)),
        device_id=str(node_config.get("device-id", "")),
    )


def default_manifest(cfg: RunConfig) -> Path:
    """The run's manifest: the configured one, or the built-in synthetic cohort."""
    if cfg.data_manifest:
        return Path(cfg.data_manifest)
    # Imported lazily: only simulations without a manifest need the generator.
    from simulations.default_cohort import ensure_cohort
    from simulations.synthetic import CohortSpec

    spec = CohortSpec(
        num_subjects=cfg.cohort_subjects,
        clips_per_class=cfg.cohort_clips_per_class,
        seed=cfg.seed,
    )
    return ensure_cohort(spec)


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


# Both entry points are memoized per process: a simulated device's worker stays
# alive across rounds and is asked for its data on every message (census,
# train, evaluate), so the manifest, the subject split and the cache are read
# once, not once per message. A deployed ClientApp runs in a fresh process per
# message, where the memo costs nothing.
@lru_cache(maxsize=32)
def _simulated_device_data(partition_id: int, cfg: RunConfig) -> LocalData:
    from simulations.partitions import split_subjects

    manifest = default_manifest(cfg)
    table = read_manifest(manifest)
    split = split_subjects({c.subject for c in table.clips}, cfg.num_heldout_subjects, cfg.seed)
    subject = split.subject_of(partition_id)
    role = split.role_of(partition_id)
    device_id = f"sim-{partition_id:03d}"
    if subject is None:
        return LocalData(device_id, role, _empty_features(), _empty_labels())
    records = tuple(c for c in table.clips if c.subject == subject)
    # Bad manifest rows cannot be attributed to a subject reliably, so the
    # simulated device reports only the problems of its own clips.
    return _prepare(records, (), manifest, cfg.cache_dir, role, device_id)


@lru_cache(maxsize=8)
def _deployed_device_data(
    data_dir: str, manifest: str, cache_dir: str, role: str, device_id: str
) -> LocalData:
    if role not in (TRAIN, HELDOUT):
        raise ValueError(f"node config role={role!r} must be {TRAIN!r} or {HELDOUT!r}")
    if not manifest and not data_dir:
        raise ValueError("node config must name 'data-dir' or 'manifest'")
    manifest_path = Path(manifest) if manifest else Path(data_dir) / "manifest.csv"
    table = read_manifest(manifest_path)
    device_id = device_id or manifest_path.parent.name
    return _prepare(
        tuple(table.clips), tuple(table.skipped), manifest_path, cache_dir, role, device_id
    )


def _prepare(
    records: tuple[ClipRecord, ...],
    skipped: tuple[SkippedClip, ...],
    manifest: Path,
    cache_dir: str,
    role: str,
    device_id: str,
) -> LocalData:
    usable = [r for r in records if r.label in COMPOSITE_CLASSES]
    label_skips = tuple(
        SkippedClip(r.clip_id, f"label {r.label!r} is not one of {COMPOSITE_CLASSES}")
        for r in records
        if r.label not in COMPOSITE_CLASSES
    )
    config, cache = preprocessing_for(manifest, cache_dir)
    result = prepare_clips(usable, config, cache, workers=1)
    all_skipped = skipped + label_skips + tuple(result.skipped)
    if not result.ready:
        return LocalData(device_id, role, _empty_features(), _empty_labels(), all_skipped)
    features = np.stack([p.features for p in result.ready]).astype(np.float32)
    labels = np.array(
        [COMPOSITE_CLASSES.index(p.record.label) for p in result.ready], dtype=np.int64
    )
    return LocalData(device_id, role, features, labels, all_skipped)


def _empty_features() -> np.ndarray:
    return np.zeros((0, 3, 28, 28), dtype=np.float32)


def _empty_labels() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)
