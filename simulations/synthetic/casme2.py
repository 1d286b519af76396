"""Write a synthetic cohort in the layout of the official CASME II release.

Produces ``CASME2_RAW_selected/sub{XX}/{Filename}/img{N}.jpg`` frame folders
and a ``CASME2-coding-synthetic.xlsx`` annotation sheet with the official
columns, so the CASME II reader can be tested end to end without the
licensed data.  As in the real release:

* frame numbers are absolute: each clip's first file is ``img{first}.jpg``
  with a clip-specific ``first`` > 1, and the sheet's Onset/Apex/Offset
  frames refer to those numbers, not to positions in the folder;
* ``Subject`` in the sheet is an unpadded integer while the folder is
  ``sub01``;
* emotions use the CASME II vocabulary (negative clips are labelled
  ``disgust`` or ``repression``, which the MEGC2019 composite maps back to
  ``negative``).
"""

from __future__ import annotations

import datetime as _dt
import io
import re
import zipfile
from pathlib import Path

from .action_units import ACTION_UNITS, CLASSES
from .cohort import CohortSpec, _rng, subject_clips
from .writer import write_frames

CASME2_COLUMNS: tuple[str, ...] = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)
SHEET_NAME = "CASME2-coding-synthetic.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
_FIXED_TIME = _dt.datetime(2014, 5, 8, 0, 0, 0)


def _emotion(label: str, rng) -> str:
    if label == "positive":
        return "happiness"
    if label == "surprise":
        return "surprise"
    return str(rng.choice(["disgust", "repression"]))


def deterministic_xlsx(wb) -> bytes:
    """Serialise an openpyxl workbook with fixed timestamps.

    openpyxl stamps the save time into ``docProps/core.xml`` and the zip
    entries; both are pinned so the same cohort gives the same bytes.
    """
    wb.properties.created = _FIXED_TIME
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                stamp = _FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                data = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                    rb"\g<1>" + stamp + rb"\g<2>",
                    data,
                )
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = info.external_attr
            zout.writestr(zi, data)
    return out.getvalue()


def write_casme2_layout(out_root: Path, spec: CohortSpec | None = None) -> Path:
    """Write ``spec``'s cohort in CASME II layout under ``out_root``; return the sheet path.

    The frames are the same clips :func:`generate_cohort` renders for
    ``spec`` (written as JPEG, as CASME II ships them).
    """
    from openpyxl import Workbook

    spec = spec if spec is not None else CohortSpec()
    out_root = Path(out_root)
    rows = []
    for s in range(spec.num_subjects):
        ep = 0
        for clip in subject_clips(spec, s):
            ep += 1
            c = CLASSES.index(clip.label)
            rng = _rng(spec.seed, s, 2, c, clip.index)  # layout-only randomness
            first = int(rng.integers(2, 300))
            filename = f"EP{ep:02d}_{clip.index + 1:02d}"
            folder = out_root / FRAMES_DIR / f"sub{s + 1:02d}" / filename
            write_frames(folder, clip.frames, first_number=first, ext="jpg")
            p = clip.plan
            rows.append(
                (
                    s + 1,
                    filename,
                    p.onset + first,
                    p.apex + first,
                    p.offset + first,
                    ACTION_UNITS[clip.label],
                    _emotion(clip.label, rng),
                )
            )

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(CASME2_COLUMNS))
    for r in rows:
        ws.append(list(r))
    sheet = out_root / SHEET_NAME
    sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet.write_bytes(deterministic_xlsx(wb))
    return sheet
