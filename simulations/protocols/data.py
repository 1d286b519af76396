"""A manifest's clips as arrays a protocol can split: features, labels, subject, dataset.

The protocols run where the data is (a researcher's machine holding the
licensed datasets, or the synthetic cohort), so all clips are prepared here
through the same cache and preprocessing as on a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.datasets.manifest import read_manifest
from client.local_data import feature_cache_for
from client.prepare import prepare_clips
from client.preprocessing.features import PreprocessConfig
from common.labels import COMPOSITE_CLASSES


@dataclass(frozen=True)
class ProtocolData:
    """Aligned per-clip arrays; ``skipped`` says why other clips were left out."""

    features: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    datasets: np.ndarray
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def only_dataset(self, dataset: str) -> ProtocolData:
        """The clips of one dataset (single-dataset LOSO on a composite manifest)."""
        keep = self.datasets == dataset
        if not keep.any():
            found = ", ".join(sorted(set(self.datasets.tolist())))
            raise ValueError(f"dataset {dataset!r} not in the data; found {found}")
        return ProtocolData(
            self.features[keep], self.labels[keep], self.subjects[keep],
            self.datasets[keep], self.skipped,
        )


def load_protocol_data(manifest: Path, cache_dir: str = "", workers: int = 1) -> ProtocolData:
    """Prepare every composite-labelled clip of ``manifest`` (cached features)."""
    table = read_manifest(manifest)
    usable = [r for r in table.clips if r.label in COMPOSITE_CLASSES]
    skipped = [f"{s.clip_id}: {s.reason}" for s in table.skipped]
    skipped += [
        f"{r.clip_id}: label {r.label!r} is not one of {', '.join(COMPOSITE_CLASSES)}"
        for r in table.clips
        if r.label not in COMPOSITE_CLASSES
    ]
    result = prepare_clips(
        usable, PreprocessConfig(), feature_cache_for(manifest, cache_dir),
        workers=workers, progress=True,
    )
    skipped += [f"{s.clip_id}: {s.reason}" for s in result.skipped]
    if not result.ready:
        raise ValueError(f"{manifest}: no usable clips ({len(skipped)} skipped)")
    ready = result.ready
    return ProtocolData(
        features=np.stack([p.features for p in ready]).astype(np.float32),
        labels=np.array([COMPOSITE_CLASSES.index(p.record.label) for p in ready]),
        subjects=np.array([p.record.subject for p in ready]),
        datasets=np.array([p.record.dataset for p in ready]),
        skipped=tuple(skipped),
    )
