"""The generic CSV manifest: columns, per-row problems, and property-based robustness."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.datasets.manifest import ManifestError, read_manifest

HEADER = ["subject", "clip", "onset", "apex", "offset", "label"]


def write_csv(
    path: Path, rows: list[list[str]], header: list[str] = HEADER, encoding: str = "utf-8"
) -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_reads_clips_with_relative_and_absolute_paths(tmp_path):
    absolute = tmp_path / "elsewhere" / "clip9.mp4"
    manifest = write_csv(
        tmp_path / "manifest.csv",
        [
            ["S01", "videos/a.avi", "3", "10", "20", "happiness"],
            ["S02", str(absolute), "0", "", "15", "surprise"],
        ],
        header=HEADER,
    )
    table = read_manifest(manifest)
    assert table.skipped == [] and len(table) == 2
    first, second = table.clips
    dataset = tmp_path.name  # default dataset: the manifest's folder
    assert first.dataset == dataset
    assert first.subject == f"{dataset}/S01"
    assert first.clip_id == f"{dataset}/videos/a.avi"
    assert first.source == tmp_path / "videos" / "a.avi"
    assert (first.onset, first.apex, first.offset, first.label, first.fps) == (
        3,
        10,
        20,
        "happiness",
        None,
    )
    assert second.source == absolute and second.apex is None


def test_optional_columns_bom_case_and_spaces(tmp_path):
    header = [
        "\ufeffSubject ",
        " CLIP",
        "Onset",
        "Apex",
        "Offset",
        "Label",
        "Dataset",
        "FPS",
        "action_units",
        "clip_id",
    ]
    rows = [
        ["01", "sub01/EP02_01f", "46", "59", "86", " happiness ", "casme2", "200", "AU12", ""],
        ["01", "sub01/long.mp4", "10", "12", "15", "surprise", "casme2", "", "", "long-event-1"],
        ["01", "sub01/long.mp4", "30", "32", "35", "surprise", "casme2", "", "", "long-event-2"],
        ["01", "s1", "1", "2", "3", "disgust", "", "100.0", "", ""],
    ]
    table = read_manifest(
        write_csv(tmp_path / "m.csv", rows, header, encoding="utf-8"), dataset="mine"
    )
    assert table.skipped == []
    a, b, c, d = table.clips
    assert (a.dataset, a.subject, a.clip_id, a.fps, a.action_units, a.label) == (
        "casme2", "casme2/01", "casme2/sub01/EP02_01f", 200.0, "AU12", "happiness",
    )  # fmt: skip
    assert b.clip_id == "casme2/long-event-1" and c.clip_id == "casme2/long-event-2"
    assert b.source == c.source
    # Same subject cell, different dataset: different people.
    assert d.dataset == "mine" and d.subject == "mine/01" != a.subject and d.fps == 100.0


def test_missing_columns_is_a_manifest_error_naming_file_and_columns(tmp_path):
    manifest = write_csv(
        tmp_path / "bad.csv",
        [["S1", "a.avi", "1", "2"]],
        header=["subject", "clip", "onset", "lbl"],
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "bad.csv" in message and "apex, offset, label" in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ManifestError, match="nope.csv: cannot open"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty.csv: empty manifest"):
        read_manifest(tmp_path / "empty.csv")


def test_bad_rows_are_skipped_with_row_numbers_and_the_rest_read(tmp_path):
    rows = [
        ["S1", "a.avi", "1", "5", "9", "happiness"],  # row 2: good
        ["S1", "b.avi", "one", "5", "9", "happiness"],  # row 3
        ["S1", "c.avi", "1", "5", "9", ""],  # row 4
        ["S1", "d.avi", "40", "30", "50", "surprise"],  # row 5
        ["S1", "a.avi", "1", "5", "9", "happiness"],  # row 6: duplicate of row 2
        ["S1", "e.avi", "1.5", "5", "9", "happiness"],  # row 7
        ["S1", "f.avi", "1", "5", "9", "happiness", "extra"],  # row 8: extra cell is ignored
        ["", "g.avi", "1", "5", "9", "happiness"],  # row 9
        ["S1", "h.avi", "-1", "5", "9", "happiness"],  # row 10
        ["S1", "i.avi", "1.0", "5", "9", "happiness"],  # row 11: 1.0 is an integer
        ["S1", "j.avi", "1", "5"],  # row 12: too few cells
        [],  # row 13: blank line, ignored
        ["S1", "k.avi", "1", "7", "6", "happiness"],  # row 14
    ]
    table = read_manifest(write_csv(tmp_path / "manifest.csv", rows))
    assert [c.clip_id.split("/")[-1] for c in table.clips] == ["a.avi", "f.avi", "i.avi"]
    reasons = {s.clip_id: s.reason for s in table.skipped}
    assert (
        reasons["manifest.csv row 3"]
        == "manifest.csv row 3: onset 'one' is not a non-negative integer frame number"
    )
    assert reasons["manifest.csv row 4"] == "manifest.csv row 4: empty label"
    assert reasons["manifest.csv row 5"] == "manifest.csv row 5: onset 40 > apex 30"
    assert (
        "row 6: duplicate clip id" in reasons[f"{tmp_path.name}/a.avi"]
        and "row 2" in reasons[f"{tmp_path.name}/a.avi"]
    )
    assert "row 7: onset '1.5'" in reasons["manifest.csv row 7"]
    assert reasons["manifest.csv row 9"].endswith("empty subject")
    assert "onset '-1'" in reasons["manifest.csv row 10"]
    assert reasons["manifest.csv row 12"].endswith("empty offset")
    assert reasons["manifest.csv row 14"].endswith("apex 7 > offset 6")
    assert len(table.skipped) == 9


def test_bad_fps(tmp_path):
    header = HEADER + ["fps"]
    rows = [
        ["S1", "a", "1", "2", "3", "x", "fast"],
        ["S1", "b", "1", "2", "3", "x", "-5"],
        ["S1", "c", "1", "2", "3", "x", "nan"],
    ]
    table = read_manifest(write_csv(tmp_path / "m.csv", rows, header))
    assert table.clips == []
    assert [s.reason for s in table.skipped] == [
        "m.csv row 2: fps 'fast' is not a number",
        "m.csv row 3: fps '-5' must be a positive number",
        "m.csv row 4: fps 'nan' must be a positive number",
    ]


# ---------------------------------------------------------------- properties

_name = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=1,
    max_size=12,
)


@st.composite
def valid_rows(draw):
    onset = draw(st.integers(0, 10_000))
    apex = draw(st.one_of(st.none(), st.integers(onset, onset + 500)))
    offset = draw(st.integers(apex if apex is not None else onset, onset + 1_000))
    return {
        "subject": draw(_name),
        "clip": draw(_name) + draw(st.sampled_from(["", ".avi", ".mp4"])),
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "label": draw(st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)),
        "fps": draw(st.one_of(st.none(), st.floats(1.0, 1000.0, allow_nan=False))),
        "dataset": draw(st.one_of(st.just(""), _name)),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(valid_rows(), max_size=15, unique_by=lambda r: r["clip"]))
def test_round_trip_of_valid_rows(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("rt")
    header = HEADER + ["fps", "dataset"]
    cells = [
        [r["subject"], r["clip"], str(r["onset"]), "" if r["apex"] is None else str(r["apex"]), str(r["offset"]),
         r["label"], "" if r["fps"] is None else repr(r["fps"]), r["dataset"]]
        for r in rows
    ]  # fmt: skip
    table = read_manifest(write_csv(folder / "manifest.csv", cells, header), dataset="default")
    assert table.skipped == []
    assert len(table.clips) == len(rows)
    for record, row in zip(table.clips, rows):
        dataset = row["dataset"] or "default"
        assert record.dataset == dataset
        assert record.subject == f"{dataset}/{row['subject']}"
        assert record.clip_id == f"{dataset}/{row['clip']}"
        assert record.source == folder / row["clip"]
        assert (record.onset, record.apex, record.offset) == (
            row["onset"],
            row["apex"],
            row["offset"],
        )
        assert record.label == row["label"]
        assert record.fps == row["fps"]


_junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "12",
            "-3",
            "1e9",
            "nan",
            "inf",
            "12.0",
            "0x1F",
            "1,2",
            '"',
            "\n",
            "\x00",
            "99999999999999",
        ]
    ),
    st.integers(-5, 50).map(str),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_junk, min_size=0, max_size=9), max_size=12))
def test_junk_cells_never_raise_and_every_bad_row_is_recorded(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("junk")
    manifest = write_csv(folder / "manifest.csv", rows, HEADER + ["fps", "dataset"])
    table = read_manifest(manifest)  # must not raise
    data_rows = [r for r in rows if any(c.strip() for c in r)]
    assert len(table.clips) + len(table.skipped) == len(data_rows)
    for skipped in table.skipped:
        assert re.match(r"manifest\.csv row \d+: \S", skipped.reason), skipped.reason
    for record in table.clips:
        assert 0 <= record.onset <= record.offset
        assert record.apex is None or record.onset <= record.apex <= record.offset
        assert record.label and record.subject.startswith(f"{record.dataset}/")


def test_windows_separators_and_absolute_clip_ids(tmp_path):
    rows = [
        ["S1", "sub01\\EP01", "1", "2", "3", "x"],
        ["S1", str(tmp_path / "v.avi"), "1", "2", "3", "x"],
    ]
    table = read_manifest(write_csv(tmp_path / "m.csv", rows), dataset="d")
    a, b = table.clips
    assert a.source == tmp_path / "sub01" / "EP01" and a.clip_id == "d/sub01/EP01"
    assert b.clip_id == "d/" + str(tmp_path / "v.avi").lstrip("/")
