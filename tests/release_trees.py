"""Full-size synthetic release trees laid out as the releases are unpacked (tests only).

The MEGC2019 composite's sources with the official per-dataset counts:
SMIC-HS 164 clips (70 negative / 51 positive / 43 surprise, 16 subjects),
CASME II 145 (88 / 32 / 25, 24 of its 26 subjects), SAMM 133 (92 / 26 / 15,
28 of its 32 subjects); 442 clips from 68 subjects.  Around them, what the
releases really hold and the composite leaves out (CASME II others, fear and
sadness; SAMM Other and Others; the three CASME II clips on MEGC2019's
exclusion list), and the annotation slips they ship with (SAMM apex -1, an
offset past the last frame, an offset typed before the apex, an apex written
"/", frames missing inside a clip).  Frames are tiny: readers only list them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.dataset_fixtures import CASME2_HEADER, SAMM_HEADER, write_xlsx

_FRAME = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()


def _frames(folder: Path, numbers: Iterable[int], name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (folder / name.format(n=n)).write_bytes(_FRAME)


@dataclass(frozen=True)
class Slip:
    """One row the release ships wrong, and the repair category expected for it."""

    dataset: str
    clip_id: str
    category: str


# CASME II's native counts: the composite keeps disgust + repression (negative),
# happiness, surprise; 2 repression and 1 happiness clip are on the exclusion list.
CASME2_COUNTS = {"disgust": 63, "repression": 27, "happiness": 33, "surprise": 25,
                 "others": 99, "sadness": 7, "fear": 2}  # fmt: skip
CASME2_EXCLUDED = {("sub04", "EP12_01f"): "repression", ("sub05", "EP12_03f"): "repression",
                   ("sub24", "EP02_07"): "happiness"}  # fmt: skip
SAMM_COUNTS = {"Anger": 57, "Contempt": 12, "Disgust": 9, "Fear": 8, "Sadness": 6,
               "Happiness": 26, "Surprise": 15, "Other": 20, "Others": 6}  # fmt: skip
SMIC_COUNTS = {"negative": 70, "positive": 51, "surprise": 43}
SMIC_SUBJECTS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20)
COMPOSITE = {"casme2": (88, 32, 25), "samm": (92, 26, 15), "smic": (70, 51, 43)}
KEPT = {"disgust", "repression", "happiness", "surprise", "Anger", "Contempt", "Disgust", "Fear",
        "Sadness", "Happiness", "Surprise"}  # fmt: skip


def _labels(counts: dict[str, int]) -> list[str]:
    return [label for label, n in counts.items() for _ in range(n)]


def write_casme2(root: Path) -> list[Slip]:
    """`CASME2/` with `CASME2-coding-20190701.xlsx` and `CASME2_RAW_selected/`."""
    rows, slips = [], []
    counts = dict(CASME2_COUNTS)
    for (subject, name), label in CASME2_EXCLUDED.items():
        counts[label] -= 1
        rows.append((subject, name, label))
    used: dict[str, int] = {}
    for i, label in enumerate(_labels(counts)):
        # Kept clips over sub01-sub24; the dropped ones over all 26 subjects.
        subject = f"sub{(i % 24 if label in KEPT else i % 26) + 1:02d}"
        used[subject] = used.get(subject, 0) + 1
        rows.append((subject, f"EP{12 + used[subject]:02d}_{used[subject] % 5 + 1:02d}", label))
    sheet_rows = []
    for i, (subject, name, label) in enumerate(rows):
        folder = root / "CASME2_RAW_selected" / subject / name
        onset, apex, offset = 10 * i + 1, 10 * i + 3, 10 * i + 6
        frames = list(range(onset, offset + 1))
        apex_cell: object = apex
        clip_id = f"casme2/{subject}/{name}"
        if i == 10:  # apex written "/" (21 such rows in the release)
            apex_cell = "/"
            slips.append(Slip("casme2", clip_id, "spotted_apex"))
        elif i == 20:  # offset typed before the apex
            offset = apex - 1
            slips.append(Slip("casme2", clip_id, "offset_before_apex"))
        elif i == 30:  # a frame missing between onset and apex
            frames.remove(onset + 1)
            slips.append(Slip("casme2", clip_id, "frames_missing"))
        _frames(folder, frames, "img{n}.jpg")
        subject_cell = int(subject[3:]) if i % 2 else subject[3:]  # "1" and "01" both occur
        sheet_rows.append((subject_cell, name, onset, apex_cell, offset, "4", label))
    write_xlsx(root / "CASME2-coding-20190701.xlsx", CASME2_HEADER, sheet_rows)
    return slips


def write_samm(root: Path) -> list[Slip]:
    """`SAMM/` with `SAMM_Micro_FACS_Codes_v2.xlsx` (title rows first) and `SAMM/{Subject}/`."""
    rows, slips = [], []
    for i, label in enumerate(_labels(SAMM_COUNTS)):
        kept = label in KEPT
        subject = 6 + (i % 28 if kept else i % 32)
        name = f"{subject:03d}_{i % 7 + 1}_{i // 7 + 1}"
        onset, apex, offset = 1000 + 20 * i, 1000 + 20 * i + 4, 1000 + 20 * i + 8
        frames = range(onset, offset + 1)
        apex_cell: object = apex
        clip_id = f"samm/{subject:03d}/{name}"
        if i in (5, 50, 100):  # apex -1: not coded, to be spotted
            apex_cell = -1
            slips.append(Slip("samm", clip_id, "spotted_apex"))
        elif i == 60:  # offset past the last frame of the folder
            offset += 3
            slips.append(Slip("samm", clip_id, "clamped_offset"))
        _frames(root / "SAMM" / f"{subject:03d}" / name, frames, f"{subject:03d}_{{n:05d}}.jpg")
        rows.append((subject, name, "2", onset, apex_cell, offset, offset - onset, "Micro - 1/2",
                     "R12", "", label))  # fmt: skip
    titles = [("SAMM Micro-Expression Database",), ("Micro-movements FACS coded",), ()]
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, rows, titles)
    return slips


def write_smic(root: Path) -> list[Slip]:
    """`SMIC/SMIC_all_raw/HS/s{N}/micro/{emotion}/{clip}/image{N:06d}.bmp`."""
    hs = root / "SMIC_all_raw" / "HS"
    codes = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for i, label in enumerate(_labels(SMIC_COUNTS)):
        subject = SMIC_SUBJECTS[i % len(SMIC_SUBJECTS)]
        name = f"s{subject}_{codes[label]}_{i // len(SMIC_SUBJECTS) + 1:02d}"
        first = 100 * i
        _frames(
            hs / f"s{subject}" / "micro" / label / name, range(first, first + 5), "image{n:06d}.bmp"
        )
    return []


def write_megc2019_sources(root: Path) -> list[Slip]:
    """CASME II, SAMM and SMIC side by side, as a researcher holding all three has them."""
    return [
        *write_casme2(root / "CASME2"),
        *write_samm(root / "SAMM"),
        *write_smic(root / "SMIC"),
    ]
