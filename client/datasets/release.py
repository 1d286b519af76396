"""The shared machinery of the official-release readers.

A release reader is a small class that DECLARES what differs between releases
(spreadsheet name, accepted column names, frame-folder pattern, frame rate) and
inherits everything else from `SheetRelease`:

1. find the annotation workbook under the dataset root;
2. read it (spreadsheet.py), one `SheetRow` per clip;
3. turn each row into a `ClipRecord`: subject namespaced by dataset, clip id
   unique, absolute frame numbers (frame numbers in the sheets are the numbers
   in the file names, so they are used as they are);
4. validate the row against the files on disk (frames.check_clip_frames);
5. skip bad rows with "<sheet> row N: <what is wrong>", and later rows that
   repeat a clip id.

Nothing happens at import time; readers are plain classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from client.datasets.clip_record import ClipError, ClipRecord
from client.datasets.frames import check_clip_frames
from client.datasets.manifest import (
    ManifestError,
    ManifestTable,
    RowProblem,
    duplicate_skip,
    parse_frame_number,
    row_skip,
)
from client.datasets.spreadsheet import SheetRow, SpreadsheetError, read_sheet

# Spellings of each field across releases; a reader's official name comes
# first (it is the one error messages use), these follow as accepted aliases.
ACTION_UNIT_COLUMNS = ("Action Units", "AU", "AUs", "Action Unit")
_ALIASES = {
    "subject": ("Subject", "sub_ID"),
    "filename": ("Filename", "fold_name"),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "label": ("Estimated Emotion", "Emotion"),
}


def sheet_columns(**official: str) -> dict[str, tuple[str, ...]]:
    """Field -> accepted header names, given each field's official name.

    sheet_columns(onset="Onset Frame", ...) accepts "Onset Frame" first, then
    the other releases' spellings ("OnsetFrame", "Onset"); fields not given
    use the most common spelling.
    """
    columns = {}
    for field, aliases in _ALIASES.items():
        name = official.get(field, aliases[0])
        columns[field] = (name, *(a for a in aliases if a != name))
    return columns


@dataclass(frozen=True)
class ClipLocation:
    """Where a row's frames are, and how the clip is named."""

    subject: str  # as in the release, e.g. "sub01", "006"
    source: Path


class ReleaseReader:
    """Interface of every reader: `read(root)` -> clip table."""

    kind: ClassVar[str]  # the `fedmer prepare --kind` name
    dataset: ClassVar[str]  # namespace of subjects and clip ids
    fps: ClassVar[float | None] = None
    # The release ships face crops, so face detection is skipped.
    pre_cropped: ClassVar[bool] = False

    def read(self, root: Path | str) -> ManifestTable:
        raise NotImplementedError

    def looks_like(self, root: Path) -> bool:
        """Whether `root` holds this release (used by auto-detection)."""
        raise NotImplementedError

    def record(
        self,
        subject: str,
        name: str,
        source: Path,
        onset: int,
        apex: int | None,
        offset: int,
        label: str,
        aus: str = "",
    ) -> ClipRecord:
        """A record with the dataset's namespacing applied."""
        return ClipRecord(
            dataset=self.dataset,
            subject=f"{self.dataset}/{subject}",
            clip_id=f"{self.dataset}/{subject}/{name}",
            source=source,
            onset=onset,
            apex=apex,
            offset=offset,
            label=label,
            fps=self.fps,
            action_units=aus,
        )


def validated(record: ClipRecord) -> ClipRecord:
    """The record if its frames on disk match the annotation; ClipError otherwise."""
    check_clip_frames(record)
    return record


def find_folder(root: Path, candidates: Iterable[str]) -> Path | None:
    """The first of `candidates` (relative to root; "." is root) that is a folder."""
    for candidate in candidates:
        folder = root / candidate
        if folder.is_dir():
            return folder
    return None


class SheetRelease(ReleaseReader):
    """A release described by an .xlsx sheet plus frame folders."""

    sheet_glob: ClassVar[str]
    # field -> accepted header names (the first is the official one)
    columns: ClassVar[Mapping[str, tuple[str, ...]]]
    optional_columns: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "action_units": ACTION_UNIT_COLUMNS
    }
    # Folders (relative to the root) that may hold the frame tree; first found wins.
    frame_roots: ClassVar[tuple[str, ...]] = (".",)
    # One video holds several events (SAMM long videos, CAS(ME)^3): the onset
    # then becomes part of the clip id so each event stays unique.
    events_share_folder: ClassVar[bool] = False

    # ---- what a release declares -----------------------------------------

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        """Subject and frame folder of one row."""
        raise NotImplementedError

    # ---- shared behaviour ------------------------------------------------

    def find_sheet(self, root: Path) -> Path:
        matches = sorted(
            p
            for p in [*root.glob(self.sheet_glob), *root.glob(f"*/{self.sheet_glob}")]
            if not p.name.startswith("~$")
        )
        if not matches:
            raise SpreadsheetError(
                f"{root}: no annotation spreadsheet matching {self.sheet_glob!r} for {self.kind}"
            )
        return matches[0]

    def frames_root(self, root: Path) -> Path:
        folder = find_folder(root, self.frame_roots)
        if folder is None:
            raise ManifestError(
                f"{root}: no frame folder for {self.kind} (looked for {', '.join(self.frame_roots)})"
            )
        return folder

    def looks_like(self, root: Path) -> bool:
        try:
            self.find_sheet(root)
        except SpreadsheetError:
            return False
        return (
            find_folder(root, [r for r in self.frame_roots if r != "."]) is not None
            or "." in self.frame_roots
        )

    def read(self, root: Path | str) -> ManifestTable:
        root = Path(root)
        sheet = self.find_sheet(root)
        rows = read_sheet(
            sheet, self.columns, self.optional_columns, marker=self.columns["filename"][0]
        )
        frames_root = self.frames_root(root)
        table = ManifestTable(path=sheet)
        first_row_of: dict[str, int] = {}
        for row in rows:
            try:
                record = validated(self.row_record(frames_root, row))
            except RowProblem as problem:
                table.skipped.append(row_skip(sheet, row.number, str(problem)))
                continue
            except ClipError as error:
                table.skipped.append(row_skip(sheet, row.number, str(error), error.category))
                continue
            if record.clip_id in first_row_of:
                table.skipped.append(
                    duplicate_skip(sheet, row.number, record.clip_id, first_row_of[record.clip_id])
                )
                continue
            first_row_of[record.clip_id] = row.number
            table.clips.append(record)
        return table

    def row_record(self, frames_root: Path, row: SheetRow) -> ClipRecord:
        values = row.values
        for field in ("subject", "filename", "label"):
            if not values.get(field):
                raise RowProblem(f"empty {self.columns[field][0]}")
        onset = parse_frame_number("onset", values["onset"])
        offset = parse_frame_number("offset", values["offset"])
        apex_text = values.get("apex", "")
        # Some releases write "/" or "-" for an unlabelled apex.
        apex = parse_frame_number("apex", apex_text) if apex_text not in ("", "/", "-") else None
        where = self.locate(frames_root, values)
        name = values["filename"] + (f"/{onset}" if self.events_share_folder else "")
        return self.record(
            where.subject,
            name,
            where.source,
            onset,
            apex,
            offset,
            values["label"],
            values.get("action_units", ""),
        )
