"""Server-side checks on every device update, before anything aggregates it.

An update that is NaN or Inf, has the wrong array names, shapes or dtypes, or
whose L2 distance from the current global model exceeds a bound is rejected
with a reason (for the log and ``results.json``) and never reaches the
strategy. Nothing here trusts the device: it only looks at the arrays.

A DP-SGD device with clipping norm C, learning rate eta and T local steps
moves the model by at most about eta * T * (C + noise); the bound should be
set generously above honest updates (see ``docs/robustness.md``) and is
``0`` (off) by default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ArrayMap = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ValidationPolicy:
    max_update_norm: float = 0.0  # L2 norm of (update - global); 0 = no bound
    check_dtype: bool = True


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()
    update_norm: float | None = None

    def summary(self) -> str:
        return "ok" if self.ok else "; ".join(self.reasons)


@dataclass
class ScreenResult:
    """Which updates may be aggregated, and why the others may not."""

    accepted: list[int] = field(default_factory=list)  # indices into the input
    rejected: dict[int, str] = field(default_factory=dict)
    norms: dict[int, float] = field(default_factory=dict)


def validate_update(global_arrays: ArrayMap, update: ArrayMap, policy: ValidationPolicy) -> Verdict:
    """Check one device's returned arrays against the global model it started from."""
    reasons: list[str] = []
    missing = sorted(set(global_arrays) - set(update))
    extra = sorted(set(update) - set(global_arrays))
    if missing:
        reasons.append(f"missing arrays: {', '.join(missing[:5])}")
    if extra:
        reasons.append(f"unexpected arrays: {', '.join(extra[:5])}")
    squared = 0.0
    comparable = True
    for name in global_arrays:
        if name not in update:
            comparable = False
            continue
        ref, got = np.asarray(global_arrays[name]), np.asarray(update[name])
        if got.shape != ref.shape:
            reasons.append(f"{name}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}")
            comparable = False
            continue
        if policy.check_dtype and got.dtype != ref.dtype:
            reasons.append(f"{name}: dtype {got.dtype}, expected {ref.dtype}")
        if not np.issubdtype(got.dtype, np.number):
            reasons.append(f"{name}: not numeric ({got.dtype})")
            comparable = False
            continue
        if np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.complexfloating):
            bad = ~np.isfinite(got)
            if bad.any():
                nans = int(np.isnan(got).sum())
                reasons.append(
                    f"{name}: {int(bad.sum())} non-finite values ({nans} NaN, {int(bad.sum()) - nans} Inf)"
                )
                comparable = False
                continue
        diff = got.astype(np.float64) - ref.astype(np.float64)
        squared += float(np.sum(diff * diff))
    norm = math.sqrt(squared) if comparable else None
    if norm is not None and not math.isfinite(norm):
        reasons.append("update norm overflows")
        norm = None
    if norm is not None and policy.max_update_norm > 0 and norm > policy.max_update_norm:
        reasons.append(f"update norm {norm:.4g} exceeds the bound {policy.max_update_norm:g}")
    return Verdict(not reasons, tuple(reasons), norm)


def screen_updates(
    global_arrays: ArrayMap, updates: Iterable[ArrayMap], policy: ValidationPolicy
) -> ScreenResult:
    """Validate many updates; the caller aggregates ``accepted`` only."""
    result = ScreenResult()
    for i, update in enumerate(updates):
        verdict = validate_update(global_arrays, update, policy)
        if verdict.update_norm is not None:
            result.norms[i] = verdict.update_norm
        if verdict.ok:
            result.accepted.append(i)
        else:
            result.rejected[i] = verdict.summary()
    return result


def array_map(record: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, np.ndarray]:
    """Flower ``ArrayRecord`` (or a plain mapping, or name/value pairs) -> ``{name: ndarray}``."""
    items = record.items() if hasattr(record, "items") else dict(record).items()
    out = {}
    for name, value in items:
        out[name] = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return out
