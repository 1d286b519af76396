"""Each official-release reader on a fixture tree in that release's exact layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.datasets.casme2 import Casme2CroppedReader, Casme2Reader
from client.datasets.casme3 import Casme3Reader
from client.datasets.fourdme import FourDmeReader
from client.datasets.manifest import ManifestError, read_manifest, write_manifest
from client.datasets.mmew import MmewReader
from client.datasets.registry import detect_kind, read_dataset
from client.datasets.samm import SammReader
from client.datasets.smic import SmicReader
from client.datasets.spreadsheet import SpreadsheetError, read_sheet
from tests.dataset_fixtures import (
    CASME2_HEADER,
    CASME3_HEADER,
    FOURDME_HEADER,
    SAMM_HEADER,
    write_frames,
    write_xlsx,
)


def table_of(table):
    """The clip table as plain tuples, easy to compare."""
    return [(c.dataset, c.subject, c.clip_id, c.source.name, c.onset, c.apex, c.offset, c.label, c.action_units)
            for c in table.clips]  # fmt: skip


def casme2_tree(
    root: Path, frames_dir: str = "CASME2_RAW_selected", name: str = "img{n}.jpg"
) -> Path:
    write_frames(root / frames_dir / "sub01" / "EP02_01f", range(46, 60), name)
    write_frames(root / frames_dir / "sub01" / "EP03_02", range(120, 140), name)
    write_frames(root / frames_dir / "sub17" / "EP01_13", range(5, 15), name)
    write_frames(
        root / frames_dir / "sub02" / "EP09_01", [*range(10, 14), *range(16, 20)], name
    )  # gap: 14, 15
    write_frames(root / frames_dir / "sub04" / "EP06_01", range(30, 46), name)
    write_frames(root / frames_dir / "sub05" / "EP07_01", range(1, 11), name)
    write_frames(root / frames_dir / "sub06" / "EP08_01", range(1, 10), name)
    rows = [
        (1, "EP02_01f", 46, 51, 59, "12", "happiness"),  # unpadded subject, as in the release
        ("01", "EP03_02", 120, 131, 139, "4+7", "disgust"),
        (17, "EP01_13", 5, 9, 14, "14", "others"),
        (1, "EP02_01f", 46, 51, 59, "12", "happiness"),  # duplicate
        (3, "EP01_01", 1, 2, 3, "1", "surprise"),  # folder missing
        (2, "EP09_01", 10, 12, 19, "1", "surprise"),  # frames 14, 15 missing: repaired
        (1, "EP03_02", 120, "x", 139, "4", "disgust"),  # bad apex
        (17, "EP01_13", 20, 21, 30, "4", "disgust"),  # onset past the folder's frames
        (4, "EP06_01", 30, 40, 35, "4", "disgust"),  # offset before apex: repaired
        (5, "EP07_01", 1, -1, 10, "4", "repression"),  # apex -1: unlabelled
        (6, "EP08_01", 1, 4, 12, "4", "disgust"),  # offset past the last frame: clamped
    ]
    return write_xlsx(root / "CASME2-coding-20140508.xlsx", CASME2_HEADER, rows)


def test_casme2_raw_reads_the_official_sheet_and_folders(tmp_path):
    sheet = casme2_tree(tmp_path)
    table = Casme2Reader().read(tmp_path)
    assert table_of(table) == [
        ("casme2", "casme2/sub01", "casme2/sub01/EP02_01f", "EP02_01f", 46, 51, 59, "happiness", "12"),
        ("casme2", "casme2/sub01", "casme2/sub01/EP03_02", "EP03_02", 120, 131, 139, "disgust", "4+7"),
        ("casme2", "casme2/sub17", "casme2/sub17/EP01_13", "EP01_13", 5, 9, 14, "others", "14"),
        ("casme2", "casme2/sub02", "casme2/sub02/EP09_01", "EP09_01", 10, 12, 19, "surprise", "1"),
        ("casme2", "casme2/sub04", "casme2/sub04/EP06_01", "EP06_01", 30, 40, 45, "disgust", "4"),
        ("casme2", "casme2/sub05", "casme2/sub05/EP07_01", "EP07_01", 1, None, 10, "repression", "4"),
        ("casme2", "casme2/sub06", "casme2/sub06/EP08_01", "EP08_01", 1, 4, 9, "disgust", "4"),
    ]  # fmt: skip
    assert all(c.fps == 200.0 for c in table.clips)
    reasons = [s.reason for s in table.skipped]
    assert len(reasons) == 4
    assert all(r.startswith(f"{sheet.name} row ") for r in reasons)
    assert "row 5: duplicate clip id 'casme2/sub01/EP02_01f' (first on row 2)" in reasons[0]
    assert "row 6:" in reasons[1] and "sub03/EP01_01: file or folder not found" in reasons[1]
    assert "row 8: apex 'x' is not a non-negative integer frame number" in reasons[2]
    assert "row 9: " in reasons[3] and "no frame for onset 20" in reasons[3]
    assert [s.category for s in table.skipped] == [
        "duplicate",
        "missing_file",
        "bad_row",
        "missing_frames",
    ]
    # Every repair names the sheet, the row and what was changed.
    notes = {r.note: r.category for r in table.repaired}
    assert notes == {
        f"{sheet.name} row 7: 2 frame(s) missing between onset 10 and offset 19 (14, 15): "
        "kept, the features need only the onset and apex frames": "frames_missing",
        f"{sheet.name} row 10: offset 35 is before the apex 40: set to the folder's last frame 45": "offset_before_apex",
        f"{sheet.name} row 11: apex '-1' read as unlabelled: it will be spotted": "spotted_apex",
        f"{sheet.name} row 12: offset 12 is past the last frame 9: clamped to 9": "clamped_offset",
    }  # fmt: skip
    assert [str(c) for c in table.row_counts] == [f"{sheet.name}: 11 of 11 row(s) read"]


def test_casme2_cropped_uses_reg_img_frames_and_skips_detection(tmp_path):
    casme2_tree(tmp_path, "Cropped", "reg_img{n}.jpg")
    assert detect_kind(tmp_path) == "casme2-cropped"
    table = Casme2CroppedReader().read(tmp_path)
    assert [c.clip_id for c in table.clips] == [
        "casme2/sub01/EP02_01f",
        "casme2/sub01/EP03_02",
        "casme2/sub17/EP01_13",
        "casme2/sub02/EP09_01",
        "casme2/sub04/EP06_01",
        "casme2/sub05/EP07_01",
        "casme2/sub06/EP08_01",
    ]
    assert Casme2CroppedReader.pre_cropped and not Casme2Reader.pre_cropped
    assert table.clips[0].subject == "casme2/sub01"  # same people as the raw release


def test_samm_finds_the_header_below_title_rows(tmp_path):
    write_frames(tmp_path / "SAMM" / "006" / "006_1_2", range(5562, 5580), "006_{n:05d}.jpg")
    write_frames(tmp_path / "SAMM" / "011" / "011_2_3", range(100, 130), "011_{n:05d}.jpg")
    titles = [("SAMM Micro-Expression Database",), ("FACS codes, version 2",), ()]
    rows = [
        (6, "006_1_2", 1, 5562, 5570, 5579, 18, "Micro - 1/2", "4+7", "", "Anger"),
        ("011", "011_2_3", 2, 100, 110, 129, 30, "Micro - 1/2", "12", "", "Happiness"),
        ("011", "011_2_4", 2, 1, 2, 3, 3, "Micro - 1/2", "12", "", "Other"),  # missing folder
    ]
    sheet = write_xlsx(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, rows, titles)
    assert detect_kind(tmp_path) == "samm"
    table = SammReader().read(tmp_path)
    assert table_of(table) == [
        ("samm", "samm/006", "samm/006/006_1_2", "006_1_2", 5562, 5570, 5579, "Anger", "4+7"),
        ("samm", "samm/011", "samm/011/011_2_3", "011_2_3", 100, 110, 129, "Happiness", "12"),
    ]
    assert len(table.skipped) == 1 and table.skipped[0].reason.startswith(f"{sheet.name} row 7:")


def test_smic_hs_labels_from_folders_without_apex(tmp_path):
    hs = tmp_path / "HS"
    write_frames(
        hs / "s1" / "micro" / "positive" / "s1_po_01", range(2000, 2012), "image{n:06d}.bmp"
    )
    write_frames(hs / "s1" / "micro" / "negative" / "s1_ne_02", range(300, 320), "image{n:06d}.bmp")
    write_frames(hs / "s12" / "micro" / "surprise" / "s12_sur_01", range(1, 9), "image{n:06d}.bmp")
    write_frames(
        hs / "s12" / "micro" / "surprise" / "s12_sur_02", [1, 2, 5, 6], "image{n:06d}.bmp"
    )  # gap
    (hs / "s12" / "micro" / "negative" / "s12_ne_09").mkdir(parents=True)  # empty folder
    assert detect_kind(tmp_path) == "smic"
    table = SmicReader().read(tmp_path)
    assert table_of(table) == [
        ("smic", "smic/s1", "smic/s1/s1_ne_02", "s1_ne_02", 300, None, 319, "negative", ""),
        ("smic", "smic/s1", "smic/s1/s1_po_01", "s1_po_01", 2000, None, 2011, "positive", ""),
        ("smic", "smic/s12", "smic/s12/s12_sur_01", "s12_sur_01", 1, None, 8, "surprise", ""),
    ]
    reasons = {s.clip_id: s.reason for s in table.skipped}
    assert "frame folder has no numbered" in reasons["smic/s12/s12_ne_09"]
    assert "missing between onset 1 and offset 6: 3, 4" in reasons["smic/s12/s12_sur_02"]


def test_casme3_part_a_several_events_per_recording(tmp_path):
    write_frames(tmp_path / "spNO.1" / "a" / "color", range(1, 80), "{n}.jpg")
    rows = [
        ("spNO.1", "a", 10, 14, 20, "4+7", "negative", "disgust"),
        ("spNO.1", "a", 50, 55, 61, "12", "positive", "happy"),
        ("spNO.1", "a", 50, 56, 61, "12", "positive", "happy"),  # same event twice
    ]
    write_xlsx(tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", CASME3_HEADER, rows)
    assert detect_kind(tmp_path) == "casme3"
    table = Casme3Reader().read(tmp_path)
    assert table_of(table) == [
        ("casme3", "casme3/spNO.1", "casme3/spNO.1/a/10", "color", 10, 14, 20, "disgust", "4+7"),
        ("casme3", "casme3/spNO.1", "casme3/spNO.1/a/50", "color", 50, 55, 61, "happy", "12"),
    ]
    assert [s.category for s in table.skipped] == ["duplicate"]


def test_mmew_frames_grouped_by_emotion(tmp_path):
    write_frames(tmp_path / "Micro_Expression" / "happiness" / "S01_h_1", range(1, 30), "{n}.jpg")
    write_frames(tmp_path / "Micro_Expression" / "surprise" / "S02_s_4", range(1, 25), "{n}.jpg")
    rows = [
        ("S01", "S01_h_1", 3, 12, 28, "AU12", "happiness"),
        ("S02", "S02_s_4", 2, 9, 24, "AU1+AU2", "surprise"),
    ]
    write_xlsx(tmp_path / "MMEW_Micro_Exp.xlsx", CASME2_HEADER, rows)
    assert detect_kind(tmp_path) == "mmew"
    table = MmewReader().read(tmp_path)
    assert table_of(table) == [
        ("mmew", "mmew/S01", "mmew/S01/S01_h_1", "S01_h_1", 3, 12, 28, "happiness", "AU12"),
        ("mmew", "mmew/S02", "mmew/S02/S02_s_4", "S02_s_4", 2, 9, 24, "surprise", "AU1+AU2"),
    ]


def test_4dme_sheet(tmp_path):
    write_frames(tmp_path / "S01" / "S01_04_01", range(0, 40), "{n}.jpg")
    rows = [
        ("S01", "S01_04_01", "Positive", 3, 10, 30, "AU12"),
        ("S01", "S01_04_01", "Surprise", 31, 33, 45, "AU1"),  # offset past the frames: clamped
        ("S01", "S01_04_01", "Surprise", 41, 43, 45, "AU1"),  # onset past the frames
    ]
    sheet = write_xlsx(tmp_path / "4DME_Labelling_Micro_release v1.xlsx", FOURDME_HEADER, rows)
    assert detect_kind(tmp_path) == "4dme"
    table = FourDmeReader().read(tmp_path)
    assert table_of(table) == [
        ("4dme", "4dme/S01", "4dme/S01/S01_04_01/3", "S01_04_01", 3, 10, 30, "Positive", "AU12"),
        ("4dme", "4dme/S01", "4dme/S01/S01_04_01/31", "S01_04_01", 31, 33, 39, "Surprise", "AU1"),
    ]
    assert [r.note for r in table.repaired] == [
        f"{sheet.name} row 3: offset 45 is past the last frame 39: clamped to 39"
    ]
    (skip,) = table.skipped
    assert skip.reason.startswith(f"{sheet.name} row 4:")
    assert "no frame for onset 41 (the clip's frames on disk are 0-39)" in skip.reason


def test_missing_columns_name_the_file_and_the_columns(tmp_path):
    header = ("Subject", "Filename", "OnsetFrame", "Estimated Emotion")
    sheet = write_xlsx(tmp_path / "CASME2-coding-x.xlsx", header, [(1, "EP01", 1, "happiness")])
    (tmp_path / "CASME2_RAW_selected").mkdir()
    with pytest.raises(SpreadsheetError) as caught:
        Casme2Reader().read(tmp_path)
    assert str(sheet) in str(caught.value)
    assert "missing required column(s) ApexFrame, OffsetFrame" in str(caught.value)


def test_wrong_format_spreadsheet_is_an_error_naming_the_file(tmp_path):
    fake = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
    fake.write_text("Subject,Filename\n6,006_1_2\n")  # a CSV renamed to .xlsx
    with pytest.raises(
        SpreadsheetError, match=r"SAMM_Micro_FACS_Codes_v2.xlsx: cannot read as an .xlsx workbook"
    ):
        SammReader().read(tmp_path)
    empty = write_xlsx(tmp_path / "sub" / "t.xlsx", ("nothing", "here"), [])
    with pytest.raises(SpreadsheetError, match="no header row with a 'Filename' column"):
        read_sheet(empty, {"filename": ("Filename",)})
    with pytest.raises(SpreadsheetError, match="no annotation spreadsheet matching"):
        Casme2Reader().read(tmp_path / "sub")


def test_auto_detection_errors_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="cannot tell which dataset"):
        detect_kind(tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        detect_kind(tmp_path / "nope")


def test_written_manifest_reads_back_to_the_same_records(tmp_path):
    casme2_tree(tmp_path / "ds")
    _, table = read_dataset(tmp_path / "ds", "auto")
    back = read_manifest(write_manifest(tmp_path / "out" / "manifest.csv", table.clips))
    assert back.skipped == []
    assert [
        (c.subject, c.clip_id, c.dataset, c.source, c.onset, c.apex, c.offset, c.label, c.fps)
        for c in back.clips
    ] == [
        (c.subject, c.clip_id, c.dataset, c.source, c.onset, c.apex, c.offset, c.label, c.fps)
        for c in table.clips
    ]


# ---- property-based: spreadsheet parsing -------------------------------------

_cells = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10**6),
    # A leading "=" makes openpyxl store a formula, which has no value until
    # Excel computes it; official sheets hold values.
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).filter(
        lambda t: not t.startswith("=")
    ),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    titles=st.lists(st.lists(st.text(alphabet="abc XYZ", max_size=8), max_size=3), max_size=4),
    rows=st.lists(st.tuples(_cells, _cells, _cells), max_size=8),
    header_case=st.sampled_from(["Filename", "filename", " FileName "]),
)
def test_sheet_rows_round_trip(tmp_path, titles, rows, header_case):
    """Whatever the cells and title rows, every non-blank row comes back once,
    with integers as their digits and text stripped."""
    titles = [[t for t in row if "filename" not in t.lower()] for row in titles]
    path = write_xlsx(tmp_path / "t.xlsx", ("Subject", header_case, "Onset"), rows, titles)
    sheet = read_sheet(
        path, {"subject": ("Subject",), "filename": ("Filename",), "onset": ("Onset",)}
    )
    got = sheet.rows
    # Every row holding a value is accounted for: read, or named as unread.
    assert sheet.present == len(sheet.rows) + len(sheet.unread)

    def text(value):
        return "" if value is None else str(value).strip()

    expected = [tuple(text(v) for v in row) for row in rows]
    expected = [row for row in expected if any(row)]
    assert [(r.values["subject"], r.values["filename"], r.values["onset"]) for r in got] == expected
    assert all(r.number > len(titles) + 1 for r in got)


def test_composite_reads_releases_side_by_side_and_names_what_is_wrong(tmp_path):
    casme2_tree(tmp_path / "CASME2")
    only_one = read_dataset_error(tmp_path, "composite")
    assert "a composite needs two or more release folders side by side" in only_one
    assert "found CASME2 (casme2)" in only_one
    casme2_tree(tmp_path / "CASME2-copy")
    twice = read_dataset_error(tmp_path, "composite")
    assert "two folders hold the same dataset (casme2, casme2)" in twice


def read_dataset_error(root, kind: str) -> str:
    with pytest.raises(ManifestError) as error:
        read_dataset(root, kind)
    return str(error.value)
