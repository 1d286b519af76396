"""Native classes and the MEGC2019 composite mapping."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from client.datasets.clip_record import ClipRecord
from client.datasets.label_schemes import (
    NATIVE_CLASSES,
    apply_scheme,
    composite_label,
    map_label,
    scheme_classes,
)
from common.labels import COMPOSITE_CLASSES

# Native label counts of the full releases that enter MEGC2019, plus the
# clips the composite drops (others, and CASME II's fear/sadness).
OFFICIAL = {
    "smic": ({"negative": 70, "positive": 51, "surprise": 43}, 16, 0),
    "casme2": (
        {
            "disgust": 63,
            "repression": 25,
            "happiness": 32,
            "surprise": 25,
            "others": 99,
            "sadness": 7,
            "fear": 2,
        },
        24,
        2,  # 26 subjects; 2 of them have only dropped labels in this table
    ),
    "samm": (
        {
            "anger": 57,
            "contempt": 12,
            "disgust": 9,
            "fear": 8,
            "sadness": 6,
            "happiness": 26,
            "surprise": 15,
            "other": 26,
        },
        28,
        4,
    ),
}
KEPT = {
    "casme2": {"disgust", "repression", "happiness", "surprise"},
    "samm": {"anger", "contempt", "disgust", "fear", "sadness", "happiness", "surprise"},
}


def official_table() -> list[ClipRecord]:
    records = []
    for dataset, (counts, kept_subjects, dropped_only_subjects) in OFFICIAL.items():
        i = 0
        for label, n in counts.items():
            for _ in range(n):
                kept = label in KEPT.get(dataset, counts)
                # Composite clips spread over the kept subjects; dropped ones
                # over all, so some subjects have nothing left.
                subject = (
                    i % kept_subjects if kept else kept_subjects + i % max(1, dropped_only_subjects)
                )
                records.append(
                    ClipRecord(
                        dataset,
                        f"{dataset}/s{subject:02d}",
                        f"{dataset}/c{i}",
                        Path("x"),
                        0,
                        1,
                        2,
                        label,
                        None,
                    )
                )
                i += 1
    return records


def test_composite_gives_the_published_counts():
    kept, dropped = apply_scheme(official_table(), "composite")
    per_dataset = Counter(r.dataset for r in kept)
    assert len(kept) == 442
    assert per_dataset == {"smic": 164, "casme2": 145, "samm": 133}
    per_class = Counter((r.dataset, r.label) for r in kept)
    assert [per_class["smic", c] for c in COMPOSITE_CLASSES] == [70, 51, 43]
    assert [per_class["casme2", c] for c in COMPOSITE_CLASSES] == [88, 32, 25]
    assert [per_class["samm", c] for c in COMPOSITE_CLASSES] == [92, 26, 15]
    assert len({r.subject for r in kept}) == 68
    assert {r.label for r in kept} == set(COMPOSITE_CLASSES)
    assert all(
        d.category == "label_not_in_scheme" and "not part of the composite scheme" in d.reason
        for d in dropped
    )
    assert len(dropped) == 99 + 7 + 2 + 26


@pytest.mark.parametrize(
    "dataset, native, composite",
    [
        ("casme2", "Happiness", "positive"),
        ("casme2", "repression", "negative"),
        ("casme2", "fear", None),  # not in MEGC2019's CASME II negative
        ("casme2-cropped", "disgust", "negative"),
        ("samm", "Contempt", "negative"),
        ("samm", "Other", None),
        ("smic", "negative", "negative"),
        ("casme3", "happy", "positive"),
        ("casme3", "sad", "negative"),
        ("casme3", "others", None),
        ("mmew", "fear", "negative"),
        ("4dme", "Surprise", "surprise"),
        ("4dme", " Repression ", "negative"),
    ],
)
def test_composite_mapping_per_dataset(dataset, native, composite):
    assert composite_label(dataset, native) == composite


def test_native_scheme_keeps_labels_normalised():
    assert map_label("samm", " Anger ", "native") == "anger"
    assert scheme_classes("native", "smic") == ("negative", "positive", "surprise")
    assert scheme_classes("composite") == COMPOSITE_CLASSES
    assert set(NATIVE_CLASSES) >= {
        "casme2",
        "casme2-cropped",
        "samm",
        "smic",
        "casme3",
        "mmew",
        "4dme",
    }
    with pytest.raises(ValueError, match="unknown label scheme 'megc'"):
        map_label("samm", "anger", "megc")
