"""The model's input, prepared on the device from the cached clip features.

What is prepared follows the model's declared input shape
(:func:`common.models.input_shape_of`):

* ``(3, F, F)`` (STSTNet, OFF-ApexNet): the cached apex features (u, v, strain);
* ``(3, T, F, F)`` (C3D-light, MSR-3D): the cached fixed-length flow sequence
  (``PreprocessConfig.sequence_length = T``, the only setting overridden),
  turned into u, v and per-frame strain, ``(3, T, F, F)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from client.datasets.clip_record import SkippedClip
from client.prepare import PreparedClip
from client.preprocessing.features import PreprocessConfig
from client.preprocessing.optical_flow import optical_strain
from common.models import input_shape_of


def preprocess_config_for(model: str, base: PreprocessConfig) -> PreprocessConfig:
    """``base`` with the sequence settings ``model``'s input shape needs.

    Only ``sequence_length`` is ever changed; a model whose spatial size
    differs from ``base.feature_size`` is an error (prepare with
    ``fedmer prepare --feature-size`` instead).
    """
    shape = input_shape_of(model)
    if len(shape) == 3:
        _check_spatial(model, shape, base)
        return base
    if len(shape) == 4:
        channels, length = shape[0], shape[1]
        if channels != 3:
            raise ValueError(
                f"model {model!r} wants {channels} channels; sequences give 3 (u, v, strain)"
            )
        _check_spatial(model, shape, base)
        return dataclasses.replace(base, sequence_length=length)
    raise ValueError(f"model {model!r} has input shape {shape}: neither (C, H, W) nor (C, T, H, W)")


def _check_spatial(model: str, shape: tuple[int, ...], config: PreprocessConfig) -> None:
    if shape[-2:] != (config.feature_size, config.feature_size):
        raise ValueError(
            f"model {model!r} takes {shape[-2]}x{shape[-1]} inputs, but the features are "
            f"prepared at {config.feature_size}x{config.feature_size}"
        )


def sequence_input(sequence: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(T, 2, F, F) cached flow sequence -> (3, T, F, F) u, v, strain model input.

    Strain is :func:`optical_strain` of every frame's flow; with
    ``robust_max`` normalization the clip is scaled like the apex features,
    with one flow and one strain scale for the whole sequence (so motion keeps
    its growth over time), from the frames after the onset.
    """
    flow = np.asarray(sequence, dtype=np.float32)
    u, v = flow[:, 0], flow[:, 1]
    strain = np.stack([optical_strain(frame.transpose(1, 2, 0)) for frame in flow])
    if config.normalization == "robust_max":
        moving = slice(1, None) if len(flow) > 1 else slice(None)
        factor = config.feature_size / config.face_size
        magnitude = np.hypot(u[moving], v[moving])
        flow_scale = max(
            float(np.percentile(magnitude, config.scale_percentile)), config.min_flow_px * factor
        )
        strain_scale = max(
            float(np.percentile(strain[moving], config.scale_percentile)), config.min_strain
        )
        u = np.clip(u / flow_scale, -1.0, 1.0)
        v = np.clip(v / flow_scale, -1.0, 1.0)
        strain = np.clip(strain / strain_scale, 0.0, 1.0)
    return np.stack([u, v, strain]).astype(np.float32)


def model_inputs(
    ready: Sequence[PreparedClip], config: PreprocessConfig
) -> tuple[list[PreparedClip], list[np.ndarray], list[SkippedClip]]:
    """The clips that have the input ``config`` asks for, their inputs, and the others."""
    if not config.sequence_length:
        return list(ready), [p.features for p in ready], []
    skipped = [
        SkippedClip(p.record.clip_id, "no usable cached flow sequence")
        for p in ready
        if p.sequence is None
    ]
    kept = [p for p in ready if p.sequence is not None]
    return kept, [sequence_input(p.sequence, config) for p in kept], skipped
