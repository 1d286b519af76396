"""Reading an official annotation workbook (.xlsx) into rows keyed by field name.

Releases name their columns differently ("OnsetFrame", "Onset Frame", "Onset")
and some put title rows above the header (SAMM), so a reader declares, per
field, the header names it accepts, and the header row is found as the first
row holding the `marker` column (e.g. "Filename").  Header matching ignores
case and spacing.

A workbook that cannot be opened, or lacks a required column, raises
`SpreadsheetError` naming the file and the missing columns: nothing in it can
be trusted.  Problems of single rows are the reader's business.
"""

from __future__ import annotations

import datetime as _dt
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.datasets.manifest import ManifestError

# The header is expected near the top; SAMM has a handful of title rows.
MAX_HEADER_SEARCH_ROWS = 50


class SpreadsheetError(ManifestError):
    """The annotation workbook as a whole cannot be used."""


@dataclass(frozen=True)
class SheetRow:
    number: int  # 1-based row number, as Excel shows it
    values: dict[str, str]  # field name -> cell text ("" when empty)


def _key(text: object) -> str:
    return "".join(str(text).split()).lower()


def cell_text(value: object) -> str:
    """A cell as text: 12.0 -> "12", None -> "", dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return str(value).strip()


def _open_rows(path: Path) -> list[tuple[object, ...]]:
    from openpyxl import load_workbook  # imported on use: only spreadsheet readers need it
    from openpyxl.utils.exceptions import InvalidFileException

    if not path.is_file():
        raise SpreadsheetError(f"{path}: annotation spreadsheet not found")
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (
        InvalidFileException,
        zipfile.BadZipFile,
        KeyError,
        OSError,
        ValueError,
        TypeError,
    ) as exc:
        raise SpreadsheetError(
            f"{path}: cannot read as an .xlsx workbook ({type(exc).__name__}: {exc}); "
            f"save it as Excel .xlsx, not .xls/.csv or a renamed file"
        ) from exc
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise SpreadsheetError(f"{path}: workbook has no worksheet")
        return [tuple(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def read_sheet(
    path: Path | str,
    required: Mapping[str, Sequence[str]],
    optional: Mapping[str, Sequence[str]] | None = None,
    marker: str = "Filename",
) -> list[SheetRow]:
    """Rows of the first worksheet, below the header row, as field -> text.

    `required`/`optional` map a field name to the header names accepted for it
    (the first is the official one, used in messages).  Blank rows are left out.
    """
    path = Path(path)
    optional = optional or {}
    rows = _open_rows(path)
    header_at = next(
        (
            i
            for i, row in enumerate(rows[:MAX_HEADER_SEARCH_ROWS])
            if any(_key(c) == _key(marker) for c in row if c is not None)
        ),
        None,
    )
    if header_at is None:
        raise SpreadsheetError(
            f"{path}: no header row with a {marker!r} column in the first {MAX_HEADER_SEARCH_ROWS} rows; "
            f"missing required column(s) {', '.join(names[0] for names in required.values())}"
        )
    header = [_key(c) if c is not None else "" for c in rows[header_at]]
    index: dict[str, int] = {}
    missing = []
    for field, names in {**required, **optional}.items():
        position = next((header.index(_key(n)) for n in names if _key(n) in header), None)
        if position is not None:
            index[field] = position
        elif field in required:
            missing.append(names[0])
    if missing:
        found = ", ".join(cell_text(c) for c in rows[header_at] if c is not None) or "none"
        raise SpreadsheetError(
            f"{path}: missing required column(s) {', '.join(missing)} (found: {found})"
        )

    table = []
    for offset, row in enumerate(rows[header_at + 1 :]):
        values = {f: cell_text(row[i]) if i < len(row) else "" for f, i in index.items()}
        if any(values.values()):
            table.append(SheetRow(number=header_at + 2 + offset, values=values))
    return table
