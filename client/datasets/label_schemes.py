"""Label schemes: each release's native classes and the MEGC2019 composite.

The composite (MEGC2019, 3 classes) is defined per source dataset, because the
same word does not mean the same thing everywhere: for CASME II only disgust and
repression count as negative (its few fear/sadness clips were left out of the
challenge), while for SAMM anger, contempt, disgust, fear and sadness do.
"others"/"other" is dropped everywhere, and MEGC2019 also left out three
CASME II clips by name (`MEGC2019_EXCLUDED`).  Datasets that were not part of
MEGC2019 (CAS(ME)^3, MMEW, 4DME) follow the same rule as SAMM: every basic
negative emotion is negative.

Native labels are validated per dataset: a release's own spelling variants
("Other" and "Others" in SAMM) become its one class, and a word that is none
of the dataset's classes is reported, never turned into a class of its own.
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
    "mmew": (
        "happiness",
        "surprise",
        "anger",
        "disgust",
        "fear",
        "sadness",
        "repression",
        "others",
    ),
    "4dme": ("positive", "negative", "surprise", "repression", "others"),
}
# CASME II "Cropped" is the same release with other frames.
NATIVE_CLASSES = {**NATIVE_CLASSES, "casme2-cropped": NATIVE_CLASSES["casme2"]}

# Spellings the releases use for one class (after normalize_label).
_SPELLINGS: Mapping[str, str] = {
    "other": "others",
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "disgusted": "disgust",
    "surprised": "surprise",
}

# Clips MEGC2019 left out of its CASME II part although their labels map to a
# composite class (the challenge's list, as the meb library applies it):
# without them the composite has 145 CASME II clips, not 148.
MEGC2019_EXCLUDED: Mapping[str, frozenset[str]] = {
    "casme2": frozenset({"casme2/sub04/EP12_01f", "casme2/sub05/EP12_03f", "casme2/sub24/EP02_07"}),
}

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


def native_label(dataset: str, label: str) -> str | None:
    """`label` as one of `dataset`'s native classes, or None when it is none of them.

    Datasets without a known class list (a generic manifest's) keep any
    non-empty label."""
    text = normalize_label(label)
    classes = NATIVE_CLASSES.get(dataset)
    if classes is None:
        return text or None
    if text in classes:
        return text
    spelled = _SPELLINGS.get(text)
    if spelled in classes:
        return spelled
    # The reverse direction: SAMM's class is "other", CAS(ME)^3's "happy".
    for variant, canonical in _SPELLINGS.items():
        if canonical == text and variant in classes:
            return variant
    return None


def composite_label(dataset: str, label: str) -> str | None:
    """The MEGC2019 class of a native label, or None when the clip is dropped."""
    family = dataset.removesuffix("-cropped")
    mapping = _COMPOSITE.get(family, _DEFAULT_COMPOSITE)
    composite = mapping.get(normalize_label(label))
    assert composite is None or composite in COMPOSITE_CLASSES
    return composite


def map_label(dataset: str, label: str, scheme: str) -> str | None:
    """The label of a clip under `scheme`; None means "not part of this scheme"."""
    if scheme == "native":
        return native_label(dataset, label)
    if scheme == "composite":
        return composite_label(dataset, label)
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


def _scheme_label(record: ClipRecord, scheme: str) -> str | SkippedClip:
    """`record`'s label under `scheme`, or why the scheme leaves it out."""
    classes = NATIVE_CLASSES.get(record.dataset)
    if classes is not None and native_label(record.dataset, record.label) is None:
        return SkippedClip(
            record.clip_id,
            f"clip {record.clip_id!r}: label {record.label!r} is not a {record.dataset} emotion "
            f"(its classes: {', '.join(classes)})",
            "unknown_label",
        )
    if scheme == "composite" and record.clip_id in MEGC2019_EXCLUDED.get(record.dataset, ()):
        return SkippedClip(
            record.clip_id,
            f"clip {record.clip_id!r}: on MEGC2019's list of clips left out of the composite",
            "megc2019_excluded",
        )
    label = map_label(record.dataset, record.label, scheme)
    if label is None:
        return SkippedClip(
            record.clip_id,
            f"clip {record.clip_id!r}: label {record.label!r} is not part of the {scheme} scheme "
            f"for {record.dataset}",
            "label_not_in_scheme",
        )
    return label


def apply_scheme(
    records: Iterable[ClipRecord], scheme: str
) -> tuple[list[ClipRecord], list[SkippedClip]]:
    """Records relabelled under `scheme`, and those the scheme leaves out (with why)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    kept: list[ClipRecord] = []
    dropped: list[SkippedClip] = []
    for record in records:
        label = _scheme_label(record, scheme)
        if isinstance(label, SkippedClip):
            dropped.append(label)
        else:
            kept.append(dataclasses.replace(record, label=label))
    return kept, dropped


def untrainable_labels(records: Iterable[ClipRecord]) -> dict[str, int]:
    """Labels (with their clip counts) that fedmer's models cannot train on.

    The federated models have the composite's three classes; a manifest
    prepared with `--scheme native` holds the release's own emotions."""
    counts: dict[str, int] = {}
    for record in records:
        if record.label not in COMPOSITE_CLASSES:
            counts[record.label] = counts.get(record.label, 0) + 1
    return counts
