"""Builders for small dataset trees in each official layout (tests only)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from openpyxl import Workbook


def write_xlsx(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    title_rows: Sequence[Sequence[object]] = (),
) -> Path:
    """A real .xlsx: optional title rows, the header, then the rows."""
    workbook = Workbook()
    sheet = workbook.active
    for row in title_rows:
        sheet.append(list(row))
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def write_frames(
    folder: Path, numbers: Iterable[int], name: str = "img{n}.jpg", size: int = 16
) -> Path:
    """Tiny numbered frames; readers only list and validate them."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        image = np.full((size, size, 3), (n * 7) % 256, np.uint8)
        assert cv2.imwrite(str(folder / name.format(n=n)), image)
    return folder


CASME2_HEADER = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
SAMM_HEADER = (
    "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
    "Duration", "Type", "Action Units", "Notes", "Estimated Emotion",
)  # fmt: skip
CASME3_HEADER = (
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "AU",
    "Objective class",
    "emotion",
)
FOURDME_HEADER = ("sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs")
