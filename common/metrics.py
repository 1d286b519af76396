"""MER metrics computed from a pooled confusion matrix.

The field reports UF1 and UAR on predictions pooled over all folds (or, in
federated evaluation, over all held-out devices), so everything here starts
from a confusion matrix rather than from per-fold averages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[int(t), int(p)] += 1
    return cm


def uf1(cm: np.ndarray) -> float:
    """Unweighted F1: mean over classes of 2TP / (2TP + FP + FN).

    A class absent from both truth and predictions has an undefined F1; it is
    left out of the mean rather than counted as 0 or 1. Each class's F1 is
    kept in [0, 1], which only matters for noisy released counts.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.clip(2 * tp[present] / denom[present], 0.0, 1.0)))


def uar(cm: np.ndarray) -> float:
    """Unweighted average recall: mean over classes of TP / N_c (classes with N_c > 0).

    Each recall is kept in [0, 1], which only matters for noisy released counts.
    """
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.clip(np.diag(cm)[present] / support[present], 0.0, 1.0)))


def weighted_f1(cm: np.ndarray) -> float:
    """Support-weighted F1: per-class F1 weighted by each class's true count.

    Reported next to UF1 because papers outside MEGC use it; on imbalanced
    data it favours the majority class, which is why UF1 is the headline.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (support - tp)
    total = support.sum()
    if total == 0:
        return 0.0
    f1 = np.clip(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0), 0.0, 1.0)
    return float(min(max(np.sum(f1 * support) / total, 0.0), 1.0))


def accuracy(cm: np.ndarray) -> float:
    """Fraction of correct predictions."""
    total = float(np.sum(cm))
    return min(max(float(np.trace(cm)) / total, 0.0), 1.0) if total > 0 else 0.0


def summarize(cm: np.ndarray) -> dict[str, object]:
    """UF1, UAR, accuracy and the confusion matrix as plain Python values."""
    return {
        "uf1": uf1(cm),
        "uar": uar(cm),
        "accuracy": accuracy(cm),
        "confusion": np.asarray(cm, dtype=np.int64).tolist(),
    }


def summarize_released(cm: np.ndarray) -> dict[str, object]:
    """UF1, UAR and accuracy of *released* (Gaussian-noised) counts, computed without clipping.

    Clipping negative noisy counts at 0, or rounding them, before pooling
    adds a positive bias to every empty cell (E[max(0, N(0, s))] = 0.4 s) and
    pulls UF1 down; summing the raw released counts first and computing the
    ratios from the sums keeps the estimate close to unbiased (each per-class
    ratio is then kept in [0, 1], since noise can push it past). ``confusion``
    is the rounded sum (a noisy cell may be negative); ``released`` keeps
    the raw sums, so that a harness can pool several runs further.
    """
    raw = np.asarray(cm, dtype=np.float64)
    return {
        "uf1": uf1(raw),
        "uar": uar(raw),
        "accuracy": accuracy(raw),
        "confusion": np.rint(raw).astype(np.int64).tolist(),
        "released": raw.tolist(),
    }
