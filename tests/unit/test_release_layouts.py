"""Each release read exactly as its publisher ships it (layouts as documented by meb)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from client.datasets.casme2 import Casme2Reader
from client.datasets.label_schemes import apply_scheme
from client.datasets.manifest import ManifestError
from client.datasets.registry import detect_kind, read_dataset
from client.datasets.smic import SmicReader
from client.datasets.spreadsheet import SpreadsheetError
from tests.dataset_fixtures import CASME2_HEADER, FOURDME_HEADER, write_frames, write_xlsx

CASME3_V2_HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                    "emotion", "Expression type")  # fmt: skip


def test_casme3_part_a_as_unpacked(tmp_path):
    """Frames in part_A/data/part_A_split/part_A/{Subject}/{Filename}/color/, sheet in part_A/annotation/."""
    frames = tmp_path / "part_A" / "data" / "part_A_split" / "part_A"
    write_frames(frames / "spNO.1" / "a" / "color", range(1, 80), "{n}.jpg")
    write_frames(frames / "spNO.2" / "b" / "color", range(1, 40), "{n}.jpg")
    rows = [
        ("spNO.1", "a", 10, 14, 20, "4+7", "negative", "disgust", "Micro-expression"),
        ("spNO.1", "a", 50, 55, 61, "12", "positive", "happy", "Macro-expression"),
        ("spNO.2", "b", 3, 8, 12, "1+2", "surprise", "surprise", "Micro-expression"),
        ("spNO.2", "b", 20, 24, 30, "4", "negative", "anger", "gesture"),
    ]
    sheet = write_xlsx(
        tmp_path / "part_A" / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        CASME3_V2_HEADER,
        rows,
    )
    assert detect_kind(tmp_path) == "casme3"
    _, table = read_dataset(tmp_path, "auto")
    assert [c.clip_id for c in table.clips] == ["casme3/spNO.1/a/10", "casme3/spNO.2/b/3"]
    assert all(c.source.parent.parent.parent == frames for c in table.clips)
    skipped = {s.category: s.reason for s in table.skipped}
    assert skipped == {
        "macro_expression": f"{sheet.name} row 3: macro-expression row (Expression type "
        "'Macro-expression'); only micro-expressions are read",
        "bad_row": f"{sheet.name} row 5: Expression type 'gesture' is neither a micro- nor a "
        "macro-expression",
    }


def test_4dme_as_shipped_reads_gray_micro(tmp_path):
    write_frames(tmp_path / "gray_micro" / "S01" / "S01_04_01", range(0, 40), "{n}.jpg")
    write_frames(tmp_path / "gray_micro_crop" / "S01" / "S01_04_01", range(0, 40), "{n}.jpg")
    rows = [("S01", "S01_04_01", "Positive", 3, 10, 30, "AU12")]
    write_xlsx(tmp_path / "4DME_Labelling_Micro_release v1.xlsx", FOURDME_HEADER, rows)
    assert detect_kind(tmp_path) == "4dme"
    _, table = read_dataset(tmp_path, "auto")
    (clip,) = table.clips
    assert clip.source == tmp_path / "gray_micro" / "S01" / "S01_04_01"


def test_4dme_crops_only(tmp_path):
    write_frames(tmp_path / "gray_micro_crop" / "S01" / "S01_04_01", range(0, 40), "{n}.jpg")
    rows = [("S01", "S01_04_01", "Positive", 3, 10, 30, "AU12")]
    write_xlsx(tmp_path / "4DME_Labelling_Micro_release v1.xlsx", FOURDME_HEADER, rows)
    (clip,) = read_dataset(tmp_path, "4dme")[1].clips
    assert clip.source.parent.parent.name == "gray_micro_crop"


def test_smic_from_the_release_root(tmp_path):
    clip = tmp_path / "SMIC_all_raw" / "HS" / "s3" / "micro" / "positive" / "s3_po_05"
    write_frames(clip, range(10, 20), "image{n:06d}.bmp")
    assert detect_kind(tmp_path) == "smic"
    (record,) = SmicReader().read(tmp_path).clips
    assert record.source == clip and (record.onset, record.offset) == (10, 19)


def test_mmew_others_under_the_repression_folder(tmp_path):
    write_frames(tmp_path / "Micro_Expression" / "repression" / "S03_o_2", range(1, 20), "{n}.jpg")
    rows = [("S03", "S03_o_2", 2, 6, 12, "AU14", "others")]
    sheet = write_xlsx(tmp_path / "MMEW_Micro_Exp.xlsx", CASME2_HEADER, rows)
    table = read_dataset(tmp_path, "auto")[1]
    (clip,) = table.clips
    assert clip.source == tmp_path / "Micro_Expression" / "repression" / "S03_o_2"
    assert clip.label == "others"
    assert [r.note for r in table.repaired] == [
        f"{sheet.name} row 2: frames found under repression/, not under the label's folder others/"
    ]


def test_no_frame_folder_names_the_paths_tried(tmp_path):
    write_frames(tmp_path / "CASME2_RAW_selected" / "elsewhere" / "EP01_01", range(1, 9))
    write_xlsx(
        tmp_path / "CASME2-coding-1.xlsx", CASME2_HEADER, [(1, "EP01_01", 1, 3, 8, "", "happiness")]
    )
    with pytest.raises(ManifestError) as caught:
        Casme2Reader().read(tmp_path)
    message = str(caught.value)
    assert "none of the casme2 frame folders tried holds the sheet's clips" in message
    assert "sub{XX}/{Filename}/img{N}.jpg" in message and "tried CASME2_RAW_selected" in message


def test_frame_root_is_the_one_holding_the_clips(tmp_path):
    # An empty folder of a preferred name must not hide the one with the frames.
    (tmp_path / "CASME2_RAW_selected").mkdir()
    clip = tmp_path / "data" / "CASME2_RAW_selected" / "sub01" / "EP01_01"
    write_frames(clip, range(1, 9))
    write_xlsx(
        tmp_path / "CASME2-coding-1.xlsx", CASME2_HEADER, [(1, "EP01_01", 1, 3, 8, "", "happiness")]
    )
    (record,) = Casme2Reader().read(tmp_path).clips
    assert record.source == clip


def _with_stale_dimension(path: Path, dimension: str) -> None:
    """Rewrite the worksheet's <dimension> record, as other tools leave it."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    parts["xl/worksheets/sheet1.xml"] = re.sub(
        r'<dimension ref="[^"]*"', f'<dimension ref="{dimension}"', xml
    ).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def test_a_stale_dimension_record_loses_no_row(tmp_path):
    for n in range(1, 21):
        write_frames(tmp_path / "CASME2_RAW_selected" / f"sub{n:02d}" / "EP01_01", range(1, 6))
    rows = [(n, "EP01_01", 1, 3, 5, "", "happiness") for n in range(1, 21)]
    sheet = write_xlsx(tmp_path / "CASME2-coding-1.xlsx", CASME2_HEADER, rows)
    _with_stale_dimension(sheet, "A1:G3")  # claims two data rows
    table = Casme2Reader().read(tmp_path)
    assert len(table.clips) == 20
    assert [str(c) for c in table.row_counts] == [f"{sheet.name}: 20 of 20 row(s) read"]


def test_the_row_count_check_catches_rows_the_reader_lost(tmp_path, monkeypatch):
    """The fault the dimension fix prevents, put back: the count check must still name it."""
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    for n in range(1, 21):
        write_frames(tmp_path / "CASME2_RAW_selected" / f"sub{n:02d}" / "EP01_01", range(1, 6))
    rows = [(n, "EP01_01", 1, 3, 5, "", "happiness") for n in range(1, 21)]
    sheet = write_xlsx(tmp_path / "CASME2-coding-1.xlsx", CASME2_HEADER, rows)
    _with_stale_dimension(sheet, "A1:G3")
    monkeypatch.setattr(ReadOnlyWorksheet, "reset_dimensions", lambda self: None)
    with pytest.raises(SpreadsheetError) as caught:
        Casme2Reader().read(tmp_path)
    assert str(sheet) in str(caught.value)
    assert (
        "read 3 rows holding values, but the worksheet holds 21 (rows 4, 5, 6, 7, 8 not read)"
        in str(caught.value)
    )


def test_unknown_native_labels_are_named_not_made_a_class(tmp_path):
    write_frames(tmp_path / "CASME2_RAW_selected" / "sub01" / "EP01_01", range(1, 6))
    write_frames(tmp_path / "CASME2_RAW_selected" / "sub01" / "EP01_02", range(1, 6))
    rows = [(1, "EP01_01", 1, 3, 5, "", "happyness"), (1, "EP01_02", 1, 3, 5, "", "Happiness ")]
    write_xlsx(tmp_path / "CASME2-coding-1.xlsx", CASME2_HEADER, rows)
    table = Casme2Reader().read(tmp_path)
    for scheme in ("native", "composite"):
        kept, dropped = apply_scheme(table.clips, scheme)
        assert [r.clip_id for r in kept] == ["casme2/sub01/EP01_02"]
        (why,) = dropped
        assert why.category == "unknown_label"
        assert why.reason.startswith(
            "clip 'casme2/sub01/EP01_01': label 'happyness' is not a casme2 emotion (its classes: happiness,"
        )
