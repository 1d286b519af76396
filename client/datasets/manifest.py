"""Reader for the generic CSV manifest (for any dataset without a dedicated reader).

Columns (header names are case-insensitive, surrounding spaces ignored):

    subject, clip, onset, apex, offset, label      required (apex may be empty)
    dataset, fps, action_units, clip_id            optional

`clip` is a video file or a frame folder, relative to the CSV's folder or absolute.
The clip id defaults to "dataset/<clip as written>"; a `clip_id` column lets one
long video carry several events (SAMM / CAS(ME)^3 style) without being rejected as
a duplicate.

A missing required column makes the whole file unusable (`ManifestError`).  A bad
row only costs that row: it is recorded in `ManifestTable.skipped` with the file
and row number, and the rest of the file is still read.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.datasets.clip_record import ClipRecord, SkippedClip, frame_order_problem
from common.atomic_io import write_bytes_atomic

REQUIRED_COLUMNS = ("subject", "clip", "onset", "apex", "offset", "label")
OPTIONAL_COLUMNS = ("dataset", "fps", "action_units", "clip_id")

# Frame numbers are written as plain integers; spreadsheets exported to CSV often
# turn them into "12.0", which is accepted.  Anything else ("12.5", "1e3", "x")
# is rejected rather than guessed at.
_INT_RE = re.compile(r"^\+?([0-9]+)(?:\.0*)?$")
_MAX_FRAME = 2**31 - 1


# Column order when fedmer writes a manifest (e.g. `fedmer prepare`).
WRITTEN_COLUMNS = REQUIRED_COLUMNS + ("dataset", "fps", "clip_id", "action_units")


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (missing file, header or columns)."""


@dataclass(frozen=True)
class RepairedRow:
    """A row kept after an annotation slip in it was repaired (see annotation_repair)."""

    clip_id: str
    note: str  # "<sheet> row N: <what was changed and why>"
    category: str


@dataclass(frozen=True)
class RowCount:
    """Rows read from an annotation sheet, against the rows the file holds."""

    path: Path
    read: int
    present: int

    def __str__(self) -> str:
        return f"{self.path.name}: {self.read} of {self.present} row(s) read"


@dataclass
class ManifestTable:
    path: Path
    clips: list[ClipRecord] = field(default_factory=list)
    skipped: list[SkippedClip] = field(default_factory=list)
    repaired: list[RepairedRow] = field(default_factory=list)
    row_counts: list[RowCount] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)

    def extend(self, other: ManifestTable) -> None:
        """Add another table's clips, skips, repairs and counts (a composite's parts)."""
        self.clips.extend(other.clips)
        self.skipped.extend(other.skipped)
        self.repaired.extend(other.repaired)
        self.row_counts.extend(other.row_counts)


class RowProblem(Exception):
    """One row of an annotation table is unusable; the message is the human reason.

    Shared by the CSV manifest and the spreadsheet readers so both word row
    problems alike."""

    category = "bad_row"


class NotMicroExpression(RowProblem):
    """The row annotates a macro-expression; micro-expression readers leave it out."""

    category = "macro_expression"


def read_manifest(path: Path | str, dataset: str | None = None) -> ManifestTable:
    """Read a generic CSV manifest.

    `dataset` names the clips' dataset when the CSV has no `dataset` column (or an
    empty cell); it defaults to the name of the folder holding the CSV.
    """
    path = Path(path)
    try:
        # utf-8-sig: Excel writes a byte-order mark that would otherwise end up
        # glued to the first column name.
        handle = open(path, newline="", encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot open manifest: {exc.strerror or exc}") from exc

    default_dataset = (dataset or path.resolve().parent.name or "manifest").strip()
    table = ManifestTable(path=path)
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ManifestError(f"{path}: unreadable header: {exc}") from exc
        if header is None or not any(cell.strip() for cell in header):
            raise ManifestError(f"{path}: empty manifest (no header row)")
        columns = [cell.strip().lower() for cell in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise ManifestError(
                f"{path}: missing required column(s) {', '.join(missing)} "
                f"(found: {', '.join(c for c in columns if c) or 'none'})"
            )
        index = {
            name: columns.index(name)
            for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
            if name in columns
        }

        first_row_of: dict[str, int] = {}
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # e.g. a cell over the csv field size limit; the reader can go on.
                row = reader.line_num
                table.skipped.append(row_skip(path, row, f"malformed CSV: {exc}"))
                continue
            row = reader.line_num  # physical line, so it matches what an editor shows
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are layout, not data
            try:
                record = _parse_row(path, cells, index, default_dataset)
            except RowProblem as problem:
                table.skipped.append(row_skip(path, row, str(problem)))
                continue
            first = first_row_of.get(record.clip_id)
            if first is not None:
                table.skipped.append(
                    duplicate_skip(
                        path,
                        row,
                        record.clip_id,
                        first,
                        "add a clip_id column to list several events of one video",
                    )
                )
                continue
            first_row_of[record.clip_id] = row
            table.clips.append(record)
    return table


def row_skip(path: Path, row: int, reason: str, category: str = "bad_row") -> SkippedClip:
    """A skipped table row, named by file and row as an editor shows them."""
    return SkippedClip(
        clip_id=f"{path.name} row {row}",
        reason=f"{path.name} row {row}: {reason}",
        category=category,
    )


def _cell(cells: list[str], index: dict[str, int], name: str) -> str:
    position = index.get(name)
    if position is None or position >= len(cells):
        return ""
    return cells[position].strip()


def duplicate_skip(
    path: Path, row: int, clip_id: str, first_row: int, hint: str = ""
) -> SkippedClip:
    """A row whose clip id an earlier row already used; the first one is kept."""
    reason = f"{path.name} row {row}: duplicate clip id {clip_id!r} (first on row {first_row})"
    return SkippedClip(
        clip_id=clip_id, reason=f"{reason}; {hint}" if hint else reason, category="duplicate"
    )


def parse_frame_number(name: str, text: str) -> int:
    """A frame number cell as an int, or RowProblem saying what is wrong with it."""
    match = _INT_RE.match(text)
    if not match:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise RowProblem(f"{name} {shown!r} is not a non-negative integer frame number")
    value = int(match.group(1))
    if value > _MAX_FRAME:
        raise RowProblem(f"{name} {value} is implausibly large")
    return value


def _parse_row(
    path: Path, cells: list[str], index: dict[str, int], default_dataset: str
) -> ClipRecord:
    values = {name: _cell(cells, index, name) for name in index}
    for name in ("subject", "clip", "onset", "offset", "label"):
        if not values[name]:
            raise RowProblem(f"empty {name}")
    # A NUL byte cannot be part of a file name on any platform we run on.
    if "\x00" in values["clip"]:
        raise RowProblem("clip path contains a NUL character")

    onset = parse_frame_number("onset", values["onset"])
    offset = parse_frame_number("offset", values["offset"])
    apex = parse_frame_number("apex", values["apex"]) if values["apex"] else None
    problem = frame_order_problem(onset, apex, offset)
    if problem:
        raise RowProblem(problem)

    fps: float | None = None
    if values.get("fps"):
        try:
            fps = float(values["fps"])
        except ValueError:
            raise RowProblem(f"fps {values['fps']!r} is not a number") from None
        if not math.isfinite(fps) or fps <= 0:
            raise RowProblem(f"fps {values['fps']!r} must be a positive number")

    dataset = values.get("dataset") or default_dataset
    clip_text = values["clip"]
    # Manifests written on Windows use backslashes; on POSIX they would be taken
    # as part of a file name.
    source = Path(clip_text.replace("\\", "/") if os.sep == "/" else clip_text)
    if not source.is_absolute():
        source = path.parent / source
    subject = values["subject"]
    # Namespace the subject so "01" of two datasets never merge into one person.
    if not subject.startswith(f"{dataset}/"):
        subject = f"{dataset}/{subject}"
    # "/data/x.mp4" would give "ds//data/x.mp4": drop the leading slash.
    clip_id = values.get("clip_id") or clip_text.replace("\\", "/").lstrip("/")
    if not clip_id.startswith(f"{dataset}/"):
        clip_id = f"{dataset}/{clip_id}"

    return ClipRecord(
        dataset=dataset,
        subject=subject,
        clip_id=clip_id,
        source=source,
        onset=onset,
        apex=apex,
        offset=offset,
        label=values["label"],
        fps=fps,
        action_units=values.get("action_units", ""),
    )


def write_manifest(path: Path | str, records: Iterable[ClipRecord]) -> Path:
    """Write records as a generic manifest that `read_manifest` reads back to
    the same records (ids and namespaced subjects included).

    Sources are written as absolute paths so the manifest can live anywhere;
    the file is replaced atomically, so a reader never sees half of it.
    """
    path = Path(path)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(WRITTEN_COLUMNS)
    for r in records:
        writer.writerow(
            [r.subject, str(Path(r.source).resolve()), r.onset, "" if r.apex is None else r.apex, r.offset,
             r.label, r.dataset, "" if r.fps is None else f"{r.fps:g}", r.clip_id, r.action_units]
        )  # fmt: skip
    write_bytes_atomic(path, text.getvalue().encode("utf-8"))
    return path
