"""A manifest's clips as arrays a protocol can split: features, labels, subject, dataset.

The protocols run where the data is (a researcher's machine holding the
licensed datasets, or the synthetic cohort), so all clips are prepared here
through the same cache and preprocessing as on a device: the settings of
:func:`client.local_data.preprocessing_for` (a manifest written by
``fedmer prepare`` keeps the settings and cache it was prepared with).

What is prepared follows the model's declared input shape
(:func:`common.models.input_shape_of`):

* ``(3, F, F)`` (STSTNet, OFF-ApexNet): the cached apex features (u, v, strain);
* ``(3, T, F, F)`` (C3D-light, MSR-3D): the cached fixed-length flow sequence
  (``PreprocessConfig.sequence_length = T``, the only setting overridden),
  turned into u, v and per-frame strain, ``(3, T, F, F)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from client.datasets.manifest import read_manifest
from client.local_data import preprocessing_for
from client.model_inputs import model_inputs, preprocess_config_for
from client.prepare import prepare_clips
from common.labels import COMPOSITE_CLASSES
from common.models import input_shape_of

DEFAULT_MODEL = "ststnet"


@dataclass(frozen=True)
class ProtocolData:
    """Aligned per-clip arrays; ``skipped`` says why other clips were left out.

    ``source`` (manifest, cache dir, workers), when known, lets
    :meth:`for_model` prepare the same clips for a model that takes another
    input (apex features vs flow sequences).
    """

    features: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    datasets: np.ndarray
    skipped: tuple[str, ...] = ()
    source: tuple[str, str, int] | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def only_dataset(self, dataset: str) -> ProtocolData:
        """The clips of one dataset (single-dataset LOSO on a composite manifest)."""
        keep = self.datasets == dataset
        if not keep.any():
            found = ", ".join(sorted(set(self.datasets.tolist())))
            raise ValueError(f"dataset {dataset!r} not in the data; found {found}")
        return ProtocolData(
            self.features[keep],
            self.labels[keep],
            self.subjects[keep],
            self.datasets[keep],
            self.skipped,
            self.source,
        )

    def for_model(self, model: str) -> ProtocolData:
        """These clips with the input ``model`` declares; prepared anew if needed."""
        expected = input_shape_of(model)
        if tuple(self.features.shape[1:]) == expected:
            return self
        if self.source is None:
            raise ValueError(
                f"model {model!r} takes inputs of shape {expected}, but the features are "
                f"{tuple(self.features.shape[1:])} and their manifest is unknown; "
                f"load them with load_protocol_data(manifest, model={model!r})"
            )
        manifest, cache_dir, workers = self.source
        return _load_cached(manifest, cache_dir, workers, expected)


def load_protocol_data(
    manifest: Path, cache_dir: str = "", workers: int = 1, model: str = DEFAULT_MODEL
) -> ProtocolData:
    """Prepare every composite-labelled clip of ``manifest`` for ``model`` (cached)."""
    return _load_cached(str(manifest), cache_dir, workers, input_shape_of(model))


@lru_cache(maxsize=4)
def _load_cached(
    manifest: str, cache_dir: str, workers: int, shape: tuple[int, ...]
) -> ProtocolData:
    # Memoized on the input shape: ``fedmer compare`` runs several modes on
    # the same clips, and models with one input shape share the prepared data.
    model = _a_model_with(shape)
    table = read_manifest(Path(manifest))
    usable = [r for r in table.clips if r.label in COMPOSITE_CLASSES]
    skipped = [f"{s.clip_id}: {s.reason}" for s in table.skipped]
    skipped += [
        f"{r.clip_id}: label {r.label!r} is not one of {', '.join(COMPOSITE_CLASSES)}"
        for r in table.clips
        if r.label not in COMPOSITE_CLASSES
    ]
    base, cache = preprocessing_for(Path(manifest), cache_dir)
    config = preprocess_config_for(model, base)
    result = prepare_clips(usable, config, cache, workers=workers, progress=True)
    skipped += [f"{s.clip_id}: {s.reason}" for s in result.skipped]
    ready, inputs, missing = model_inputs(result.ready, config)
    skipped += [f"{s.clip_id}: {s.reason}" for s in missing]
    if not ready:
        raise ValueError(f"{manifest}: no usable clips ({len(skipped)} skipped)")
    return ProtocolData(
        features=np.stack(inputs).astype(np.float32),
        labels=np.array([COMPOSITE_CLASSES.index(p.record.label) for p in ready]),
        subjects=np.array([p.record.subject for p in ready]),
        datasets=np.array([p.record.dataset for p in ready]),
        skipped=tuple(skipped),
        source=(manifest, cache_dir, workers),
    )


def _a_model_with(shape: tuple[int, ...]) -> str:
    from common.models import available_models

    for name in available_models():
        if input_shape_of(name) == shape:
            return name
    raise ValueError(f"no registered model takes inputs of shape {shape}")
