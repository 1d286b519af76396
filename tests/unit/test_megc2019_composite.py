"""The MEGC2019 composite from full-size release trees: exactly 442 clips from 68 subjects."""

from __future__ import annotations

from collections import Counter

import pytest

from client.datasets.label_schemes import apply_scheme
from client.datasets.registry import detect_kind, read_dataset
from tests.release_trees import COMPOSITE, write_megc2019_sources


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("megc2019")
    slips = write_megc2019_sources(root)
    return root, slips


@pytest.fixture(scope="module")
def composite(sources):
    root, _ = sources
    kind, table = read_dataset(root, "auto")
    records, dropped = apply_scheme(table.clips, "composite")
    return kind, table, records, dropped


def test_the_composite_has_the_official_counts(composite):
    kind, _, records, _ = composite
    assert kind == "composite"
    assert len(records) == 442
    assert len({r.subject for r in records}) == 68
    for dataset, (negative, positive, surprise) in COMPOSITE.items():
        mine = [r for r in records if r.dataset == dataset]
        assert Counter(r.label for r in mine) == {
            "negative": negative,
            "positive": positive,
            "surprise": surprise,
        }, dataset
    subjects = Counter(r.dataset for r in {r.subject: r for r in records}.values())
    assert subjects == {"smic": 16, "casme2": 24, "samm": 28}


def test_every_row_left_out_is_listed_with_why(composite):
    _, table, records, dropped = composite
    # Every row the sheets hold was read, and none was lost on the way.
    assert [(c.path.name, c.read, c.present) for c in table.row_counts] == [
        ("CASME2-coding-20190701.xlsx", 256, 256),
        ("SAMM_Micro_FACS_Codes_v2.xlsx", 159, 159),
    ]
    assert table.skipped == []  # every row is usable as a clip
    assert len(table.clips) == 256 + 159 + 164
    assert len(records) + len(dropped) == len(table.clips)
    excluded = sorted(d.clip_id for d in dropped if d.category == "megc2019_excluded")
    assert excluded == ["casme2/sub04/EP12_01f", "casme2/sub05/EP12_03f", "casme2/sub24/EP02_07"]
    out_of_scheme = Counter(
        (d.clip_id.split("/")[0], d.reason.split("label ")[1].split(" is")[0])
        for d in dropped
        if d.category == "label_not_in_scheme"
    )
    assert out_of_scheme == {
        ("casme2", "'others'"): 99,
        ("casme2", "'sadness'"): 7,
        ("casme2", "'fear'"): 2,
        ("samm", "'Other'"): 20,
        ("samm", "'Others'"): 6,
    }


def test_annotation_slips_are_repaired_and_listed(sources, composite):
    _, slips = sources
    _, table, records, _ = composite
    repaired = {(r.clip_id, r.category) for r in table.repaired}
    assert repaired == {(s.clip_id, s.category) for s in slips}
    kept = {r.clip_id: r for r in records}
    spotted = [s.clip_id for s in slips if s.category == "spotted_apex"]
    assert spotted and all(kept[c].apex is None for c in spotted)
    for repair in table.repaired:
        assert " row " in repair.note and repair.note.split(" row ")[0].endswith(".xlsx")


def test_samm_other_and_others_are_one_native_class(composite):
    _, table, _, _ = composite
    native, dropped = apply_scheme([c for c in table.clips if c.dataset == "samm"], "native")
    assert dropped == []
    assert Counter(r.label for r in native)["other"] == 26
    assert "others" not in {r.label for r in native}


def test_each_source_is_detected_on_its_own(sources):
    root, _ = sources
    assert detect_kind(root / "CASME2") == "casme2"
    assert detect_kind(root / "SAMM") == "samm"
    assert detect_kind(root / "SMIC") == "smic"  # SMIC_all_raw/HS, from the release root
