"""Reading an official annotation workbook (.xlsx) into rows keyed by field name.

Releases name their columns differently ("OnsetFrame", "Onset Frame", "Onset")
and some put title rows above the header (SAMM), so a reader declares, per
field, the header names it accepts, and the header row is found as the first
row holding the `marker` column (e.g. "Filename").  Header matching ignores
case and spacing.

A workbook that cannot be opened, or lacks a required column, raises
`SpreadsheetError` naming the file and the missing columns: nothing in it can
be trusted.  Problems of single rows are the reader's business.

Rows are read whatever the workbook's own records say: openpyxl's fast mode
trusts the `<dimension>` element a worksheet declares, and a workbook whose
dimension is stale (common after editing in other tools) would silently lose
every row past it.  The dimension is therefore ignored, and the rows read are
counted against the rows the worksheet's XML holds; a difference is an error.
"""

from __future__ import annotations

import datetime as _dt
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from client.datasets.manifest import ManifestError

# The header is expected near the top; SAMM has a handful of title rows.
MAX_HEADER_SEARCH_ROWS = 50


class SpreadsheetError(ManifestError):
    """The annotation workbook as a whole cannot be used."""


@dataclass(frozen=True)
class SheetRow:
    number: int  # 1-based row number, as Excel shows it
    values: dict[str, str]  # field name -> cell text ("" when empty)


@dataclass(frozen=True)
class Sheet:
    """The rows of a worksheet below its header."""

    path: Path
    rows: list[SheetRow]  # rows with a value in a column read
    # Rows below the header holding any value, counted in the worksheet's XML;
    # rows holding values only in columns no reader uses are in `unread`.
    present: int
    unread: list[int]  # row numbers of such rows


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


_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _xml_rows_with_values(archive: zipfile.ZipFile, member: str) -> list[int]:
    """Numbers of the rows of a worksheet part that hold a value (or inline string)."""
    numbers = []
    with archive.open(member) as source:
        for _, element in ElementTree.iterparse(source):
            if element.tag != f"{_MAIN_NS}row":
                continue
            if any(
                child.find(f"{_MAIN_NS}v") is not None or child.find(f"{_MAIN_NS}is") is not None
                for child in element
            ):
                numbers.append(int(element.get("r", len(numbers) + 1)))
            element.clear()
    return numbers


def _open_rows(path: Path) -> tuple[list[tuple[object, ...]], list[int]]:
    """Every row of the first worksheet (values), and the numbers of the rows
    its XML says hold a value."""
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
        sheet.reset_dimensions()  # read every row, not those the dimension record claims
        rows = [tuple(row) for row in sheet.iter_rows(values_only=True)]
        with zipfile.ZipFile(path) as archive:
            in_xml = _xml_rows_with_values(archive, sheet._worksheet_path)  # type: ignore[union-attr]
    finally:
        workbook.close()
    with_values = [i + 1 for i, row in enumerate(rows) if any(c is not None for c in row)]
    if with_values != in_xml:
        lost = sorted(set(in_xml) - set(with_values))
        raise SpreadsheetError(
            f"{path}: read {len(with_values)} rows holding values, but the worksheet holds "
            f"{len(in_xml)}" + (f" (rows {', '.join(map(str, lost[:5]))} not read)" if lost else "")
        )
    return rows, in_xml


def read_sheet(
    path: Path | str,
    required: Mapping[str, Sequence[str]],
    optional: Mapping[str, Sequence[str]] | None = None,
    marker: str = "Filename",
) -> Sheet:
    """Rows of the first worksheet, below the header row, as field -> text.

    `required`/`optional` map a field name to the header names accepted for it
    (the first is the official one, used in messages).  Blank rows are left out.
    """
    path = Path(path)
    optional = optional or {}
    rows, numbered = _open_rows(path)
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
    unread = []
    for offset, row in enumerate(rows[header_at + 1 :]):
        values = {f: cell_text(row[i]) if i < len(row) else "" for f, i in index.items()}
        number = header_at + 2 + offset
        if any(values.values()):
            table.append(SheetRow(number=number, values=values))
        elif any(c is not None for c in row):
            unread.append(number)
    present = sum(1 for n in numbered if n > header_at + 1)
    return Sheet(path, table, present, unread)
