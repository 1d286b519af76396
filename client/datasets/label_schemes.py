"""Label schemes: each release's native classes and the MEGC2019 composite.

The composite (MEGC2019, 3 classes) is defined per source dataset, because the
same word does not mean the same thing everywhere: for CASME II only disgust and
repression count as negative (its few fear/sadness clips were left out of the
challenge), while for SAMM anger, contempt, disgust, fear and sadness do.
"others"/"other" is dropped everywhere.  Datasets that were not part of
MEGC2019 (CAS(ME)^3, MMEW, 4DME) follow the same rule as SAMM: every basic
negative emotion is negative.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from client.datasets.clip_record import ClipRecord, SkippedClip
from common.labels import COMPOSITE_CLASSES

SCHEMES = ("native", "composite")

NATIVE_CLASSES: Mapping[str, tuple[str, ...]] = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "sadness", "fear", "others"),
    "samm": ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "other"),
    "smic": ("negative", "positive", "surprise"),
    "casme3": ("anger", "disgust", "fear", "happy", "sad", "surprise", "others"),
    "mmew": ("happiness", "surprise", "anger", "disgust", "fear", "sadness", "others"),
    "4dme": ("positive", "negative", "surprise", "repression", "others"),
}
# CASME II "Cropped" is the same release with other frames.
NATIVE_CLASSES = {**NATIVE_CLASSES, "casme2-cropped": NATIVE_CLASSES["casme2"]}

_NEGATIVE_BASIC = (
    "anger",
    "contempt",
    "disgust",
    "fear",
    "sadness",
    "sad",
    "negative",
    "repression",
)
_COMPOSITE: Mapping[str, Mapping[str, str]] = {
    "casme2": {
        "happiness": "positive",
        "disgust": "negative",
        "repression": "negative",
        "surprise": "surprise",
    },
    "samm": {
        "happiness": "positive",
        **{label: "negative" for label in ("anger", "contempt", "disgust", "fear", "sadness")},
        "surprise": "surprise",
    },
    "smic": {"positive": "positive", "negative": "negative", "surprise": "surprise"},
}
_DEFAULT_COMPOSITE: Mapping[str, str] = {
    "happiness": "positive",
    "happy": "positive",
    "positive": "positive",
    "surprise": "surprise",
    **{label: "negative" for label in _NEGATIVE_BASIC},
}


def normalize_label(label: str) -> str:
    """Lower case, single spaces: sheets write "Happiness", "happiness ", "Others"."""
    return " ".join(str(label).split()).lower()


def composite_label(dataset: str, native_label: str) -> str | None:
    """The MEGC2019 class of a native label, or None when the clip is dropped."""
    family = dataset.removesuffix("-cropped")
    mapping = _COMPOSITE.get(family, _DEFAULT_COMPOSITE)
    label = mapping.get(normalize_label(native_label))
    assert label is None or label in COMPOSITE_CLASSES
    return label


def map_label(dataset: str, native_label: str, scheme: str) -> str | None:
    """The label of a clip under `scheme`; None means "not part of this scheme"."""
    if scheme == "native":
        label = normalize_label(native_label)
        return label or None
    if scheme == "composite":
        return composite_label(dataset, native_label)
    raise ValueError(f"unknown label scheme {scheme!r}; choose from {', '.join(SCHEMES)}")


def scheme_classes(scheme: str, dataset: str | None = None) -> tuple[str, ...]:
    """Class names of a scheme (native classes need the dataset)."""
    if scheme == "composite":
        return COMPOSITE_CLASSES
    if scheme == "native":
        if dataset not in NATIVE_CLASSES:
            raise ValueError(f"no native classes known for dataset {dataset!r}")
        return NATIVE_CLASSES[dataset]
    raise ValueError(f"unknown label scheme {scheme!r}; choose from {', '.join(SCHEMES)}")


def apply_scheme(
    records: Iterable[ClipRecord], scheme: str
) -> tuple[list[ClipRecord], list[SkippedClip]]:
    """Records relabelled under `scheme`, and those the scheme leaves out (with why)."""
    kept: list[ClipRecord] = []
    dropped: list[SkippedClip] = []
    for record in records:
        label = map_label(record.dataset, record.label, scheme)
        if label is None:
            reason = f"clip {record.clip_id!r}: label {record.label!r} is not part of the {scheme} scheme for {record.dataset}"
            dropped.append(SkippedClip(record.clip_id, reason, "label_not_in_scheme"))
        else:
            kept.append(dataclasses.replace(record, label=label))
    return kept, dropped
