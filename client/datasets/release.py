"""The shared machinery of the official-release readers.

A release reader is a small class that DECLARES what differs between releases
(spreadsheet name, accepted column names, frame-folder pattern, frame rate) and
inherits everything else from `SheetRelease`:

1. find the annotation workbook under the dataset root, searching the tree
   (release_tree.py): releases are unpacked in more than one layout;
2. read it (spreadsheet.py), one `SheetRow` per clip, every row the file
   holds (counted, and the count kept in the table);
3. find the frame root: of the folders the reader declares, and of the folders
   anywhere in the tree bearing their names, the one holding the sheet's clips;
4. turn each row into a `ClipRecord`: subject namespaced by dataset, clip id
   unique, absolute frame numbers (frame numbers in the sheets are the numbers
   in the file names, so they are used as they are); an apex of -1, "/", "-"
   or empty is unlabelled (spotted later); macro-expression rows are left out;
5. check the row against the files on disk and repair the slips releases ship
   with, writing each repair down (annotation_repair.py);
6. skip bad rows with "<sheet> row N: <what is wrong>", and later rows that
   repeat a clip id.

Nothing happens at import time; readers are plain classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from client.datasets.annotation_repair import Repair, repaired
from client.datasets.clip_record import ClipError, ClipRecord
from client.datasets.frames import check_clip_frames
from client.datasets.manifest import (
    ManifestError,
    ManifestTable,
    NotMicroExpression,
    RepairedRow,
    RowCount,
    RowProblem,
    duplicate_skip,
    parse_frame_number,
    row_skip,
)
from client.datasets.release_tree import candidate_roots, files_matching, shown
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
EXPRESSION_TYPE_COLUMNS = (
    "Expression type",
    "Expression Type",
    "ExpressionType",
    "Type of expression",
)
# How sheets write "no apex was coded".
UNLABELLED_APEX = ("", "/", "-", "-1")
# Rows sampled to decide which candidate folder holds a release's frames.
_ROOT_SAMPLE = 25


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
    note: str = ""  # how the frames were found, when not where the sheet's fields say


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


def expression_type_problem(text: str) -> RowProblem | None:
    """Why a row whose Expression type is `text` is not a micro-expression, or None."""
    kind = " ".join(text.split()).lower()
    if not kind or "micro" in kind or kind == "me":
        return None
    if "macro" in kind or kind == "mae":
        return NotMicroExpression(
            f"macro-expression row (Expression type {text!r}); only micro-expressions are read"
        )
    return RowProblem(f"Expression type {text!r} is neither a micro- nor a macro-expression")


class SheetRelease(ReleaseReader):
    """A release described by an .xlsx sheet plus frame folders."""

    sheet_glob: ClassVar[str]
    # field -> accepted header names (the first is the official one)
    columns: ClassVar[Mapping[str, tuple[str, ...]]]
    optional_columns: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "action_units": ACTION_UNIT_COLUMNS,
        "expression_type": EXPRESSION_TYPE_COLUMNS,
    }
    # Folders (relative to the root) that may hold the frame tree, in order of
    # preference; folders of the same names deeper in the tree are tried too.
    frame_roots: ClassVar[tuple[str, ...]] = (".",)
    # The frame layout below a frame root, for messages.
    layout: ClassVar[str] = "{Subject}/{Filename}/"
    # One video holds several events (SAMM long videos, CAS(ME)^3): the onset
    # then becomes part of the clip id so each event stays unique.
    events_share_folder: ClassVar[bool] = False

    # ---- what a release declares -----------------------------------------

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        """Subject and frame folder of one row."""
        raise NotImplementedError

    # ---- shared behaviour ------------------------------------------------

    def find_sheet(self, root: Path) -> Path:
        matches = files_matching(root, self.sheet_glob)
        if not matches:
            raise SpreadsheetError(
                f"{root}: no annotation spreadsheet matching {self.sheet_glob!r} for {self.kind} "
                "(searched three folders deep)"
            )
        return matches[0]

    def frames_root(self, root: Path, rows: list[SheetRow] | None = None) -> Path:
        """The folder holding the frames of `rows` (of the first rows, sampled)."""
        candidates = candidate_roots(root, self.frame_roots)
        if not candidates:
            raise ManifestError(
                f"{root}: no frame folder for {self.kind} (looked for {', '.join(self.frame_roots)}, "
                f"also deeper in the tree)"
            )
        if not rows:
            return candidates[0]
        sample = rows[:_ROOT_SAMPLE]
        hits = [sum(self._locates(folder, row) for row in sample) for folder in candidates]
        best = max(range(len(candidates)), key=lambda i: (hits[i], -i))
        if hits[best] == 0:
            raise ManifestError(
                f"{root}: none of the {self.kind} frame folders tried holds the sheet's clips as "
                f"{self.layout} (tried {shown(root, candidates)})"
            )
        return candidates[best]

    def _locates(self, frames_root: Path, row: SheetRow) -> bool:
        try:
            return self.locate(frames_root, row.values).source.is_dir()
        except (KeyError, ValueError, OSError):
            return False

    def looks_like(self, root: Path) -> bool:
        try:
            self.find_sheet(root)
        except SpreadsheetError:
            return False
        specific = [r for r in self.frame_roots if r != "."]
        return bool(candidate_roots(root, specific)) or "." in self.frame_roots

    def read(self, root: Path | str) -> ManifestTable:
        root = Path(root)
        sheet_path = self.find_sheet(root)
        sheet = read_sheet(
            sheet_path, self.columns, self.optional_columns, marker=self.columns["filename"][0]
        )
        frames_root = self.frames_root(root, sheet.rows)
        table = ManifestTable(path=sheet_path)
        table.row_counts.append(
            RowCount(sheet_path, len(sheet.rows) + len(sheet.unread), sheet.present)
        )
        for number in sheet.unread:
            table.skipped.append(
                row_skip(
                    sheet_path,
                    number,
                    "holds values only in columns no clip field is read from; not a clip",
                    "not_a_clip",
                )
            )
        first_row_of: dict[str, int] = {}
        for row in sheet.rows:
            try:
                record, notes = self.row_record(frames_root, row)
                record, repairs = repaired(record)
            except RowProblem as problem:
                table.skipped.append(
                    row_skip(sheet_path, row.number, str(problem), problem.category)
                )
                continue
            except ClipError as error:
                table.skipped.append(row_skip(sheet_path, row.number, str(error), error.category))
                continue
            if record.clip_id in first_row_of:
                table.skipped.append(
                    duplicate_skip(
                        sheet_path, row.number, record.clip_id, first_row_of[record.clip_id]
                    )
                )
                continue
            first_row_of[record.clip_id] = row.number
            table.clips.append(record)
            where = f"{sheet_path.name} row {row.number}"
            table.repaired.extend(
                RepairedRow(record.clip_id, f"{where}: {r.note}", r.category)
                for r in [*notes, *repairs]
            )
        return table

    def row_record(self, frames_root: Path, row: SheetRow) -> tuple[ClipRecord, list[Repair]]:
        """The row's record, and what was read other than as written."""
        values = row.values
        problem = expression_type_problem(values.get("expression_type", ""))
        if problem is not None:
            raise problem
        for field in ("subject", "filename", "label"):
            if not values.get(field):
                raise RowProblem(f"empty {self.columns[field][0]}")
        onset = parse_frame_number("onset", values["onset"])
        offset = parse_frame_number("offset", values["offset"])
        apex_text = values.get("apex", "").strip()
        notes: list[Repair] = []
        apex: int | None = None
        if apex_text in UNLABELLED_APEX:
            if apex_text:
                notes.append(
                    Repair(
                        "spotted_apex", f"apex {apex_text!r} read as unlabelled: it will be spotted"
                    )
                )
        else:
            apex = parse_frame_number("apex", apex_text)
        where = self.locate(frames_root, values)
        if where.note:
            notes.append(Repair("frames_elsewhere", where.note))
        name = values["filename"] + (f"/{onset}" if self.events_share_folder else "")
        record = self.record(
            where.subject,
            name,
            where.source,
            onset,
            apex,
            offset,
            values["label"],
            values.get("action_units", ""),
        )
        return record, notes
