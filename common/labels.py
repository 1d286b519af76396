"""Class names used by the models' output layer.

The MEGC2019 composite has three classes; their order fixes the meaning of the
logits and of the confusion-matrix rows, so it is defined once, here.
"""

from __future__ import annotations

COMPOSITE_CLASSES: tuple[str, ...] = ("negative", "positive", "surprise")


def class_index(label: str, classes: tuple[str, ...] = COMPOSITE_CLASSES) -> int:
    """Index of ``label`` in ``classes``; a clear error names the unknown label."""
    try:
        return classes.index(label.strip().lower())
    except ValueError:
        raise ValueError(f"label {label!r} is not one of {', '.join(classes)}") from None
