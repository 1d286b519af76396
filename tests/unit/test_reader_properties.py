"""Property tests over a release reader: valid trees read back exactly; each corruption
gives a message naming the file and row, never a crash and never a silent drop."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.datasets.casme2 import Casme2Reader
from client.datasets.clip_record import ClipError
from client.datasets.frames import read_frames
from client.datasets.label_schemes import NATIVE_CLASSES
from client.datasets.manifest import ManifestError
from client.datasets.spreadsheet import SpreadsheetError
from tests.dataset_fixtures import CASME2_HEADER, write_frames, write_xlsx

SHEET = "CASME2-coding-20140508.xlsx"
PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Clip:
    subject: int
    name: str
    onset: int
    apex: int
    offset: int
    label: str


@st.composite
def clips(draw) -> list[Clip]:
    count = draw(st.integers(1, 6))
    drawn = []
    for i in range(count):
        onset = draw(st.integers(0, 300))
        apex = onset + draw(st.integers(0, 8))
        offset = apex + draw(st.integers(0, 8))
        drawn.append(
            Clip(
                subject=draw(st.integers(1, 26)),
                name=f"EP{draw(st.integers(1, 20)):02d}_{i:02d}",  # unique: i
                onset=onset,
                apex=apex,
                offset=offset,
                label=draw(st.sampled_from(NATIVE_CLASSES["casme2"])),
            )
        )
    return drawn


def write_tree(root: Path, tree: list[Clip]) -> list[list[object]]:
    rows: list[list[object]] = []
    for clip in tree:
        folder = root / "CASME2_RAW_selected" / f"sub{clip.subject:02d}" / clip.name
        write_frames(folder, range(clip.onset, clip.offset + 1), size=8)
        rows.append([clip.subject, clip.name, clip.onset, clip.apex, clip.offset, "4", clip.label])
    return rows


@PROPERTY_SETTINGS
@given(tree=clips())
def test_a_valid_tree_reads_back_exactly(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_xlsx(root / SHEET, CASME2_HEADER, write_tree(root, tree))
        table = Casme2Reader().read(root)
    assert table.skipped == [] and table.repaired == []
    assert [(c.subject, c.clip_id, c.onset, c.apex, c.offset, c.label) for c in table.clips] == [
        (
            f"casme2/sub{c.subject:02d}",
            f"casme2/sub{c.subject:02d}/{c.name}",
            c.onset,
            c.apex,
            c.offset,
            c.label,
        )
        for c in tree
    ]


CORRUPTIONS = (
    "missing_folder",
    "renamed_column",
    "non_integer_frame",
    "duplicate_row",
    "unreadable_image",
)


@PROPERTY_SETTINGS
@given(tree=clips(), corruption=st.sampled_from(CORRUPTIONS), data=st.data())
def test_each_corruption_is_named_never_a_crash_or_a_silent_drop(tree, corruption, data):
    victim = data.draw(st.integers(0, len(tree) - 1))
    clip = tree[victim]
    row_number = victim + 2  # below the header, as Excel numbers rows
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = write_tree(root, tree)
        header = list(CASME2_HEADER)
        folder = root / "CASME2_RAW_selected" / f"sub{clip.subject:02d}" / clip.name
        if corruption == "missing_folder":
            for frame in folder.iterdir():
                frame.unlink()
            folder.rmdir()
        elif corruption == "renamed_column":
            column = data.draw(st.sampled_from([0, 1, 2, 4, 6]))  # a required one
            header[column] = header[column] + " (old)"
        elif corruption == "non_integer_frame":
            field = data.draw(st.sampled_from([2, 3, 4]))
            rows[victim][field] = f"{rows[victim][field]}a"
        elif corruption == "duplicate_row":
            rows.append(list(rows[victim]))
        elif corruption == "unreadable_image":
            (folder / f"img{clip.onset}.jpg").write_bytes(b"not a jpeg")
        write_xlsx(root / SHEET, header, rows)

        if corruption == "renamed_column":
            with pytest.raises(SpreadsheetError) as caught:
                Casme2Reader().read(root)
            assert SHEET in str(caught.value) and "missing required column" in str(caught.value)
            return
        if corruption == "missing_folder" and len(tree) == 1:
            # No clip of the sheet is anywhere: the release as a whole is wrong.
            with pytest.raises(ManifestError) as caught:
                Casme2Reader().read(root)
            assert "tried CASME2_RAW_selected" in str(caught.value)
            return
        table = Casme2Reader().read(root)
        # Nothing silently dropped: every row is a clip or a named skip.
        assert len(table.clips) + len(table.skipped) == len(rows)
        for skip in table.skipped:
            assert skip.reason.startswith(f"{SHEET} row "), skip.reason
        if corruption == "unreadable_image":
            # Listing cannot see it; decoding names the file.
            (record,) = [c for c in table.clips if c.clip_id.endswith(f"/{clip.name}")]
            with pytest.raises(ClipError) as caught:
                read_frames(record, [record.onset, record.apex or record.onset])
            assert f"img{clip.onset}.jpg" in str(caught.value)
            return
        (skip,) = table.skipped
        if corruption == "missing_folder":
            assert skip.reason.startswith(f"{SHEET} row {row_number}:")
            assert str(folder) in skip.reason and "not found" in skip.reason
        elif corruption == "non_integer_frame":
            assert skip.reason.startswith(f"{SHEET} row {row_number}:")
            assert "is not a non-negative integer frame number" in skip.reason
        elif corruption == "duplicate_row":
            assert skip.reason.startswith(f"{SHEET} row {len(rows) + 1}:")
            assert f"(first on row {row_number})" in skip.reason
