"""Write megc-like clips as each source release ships them, so its own reader reads them.

* CASME II: ``CASME2/CASME2_RAW_selected/sub{XX}/{EPxx_yy}/img{N}.jpg`` and
  ``CASME2-coding-megc-like.xlsx`` (Subject unpadded, absolute frame numbers;
  negative clips coded ``disgust`` or ``repression``);
* SAMM: ``SAMM/SAMM/{006}/{006_1_2}/006_{N:05d}.jpg`` and
  ``SAMM_Micro_FACS_Codes_v2.xlsx`` (title rows above the header; negative
  clips coded anger, contempt, disgust, fear or sadness in SAMM's proportions);
* SMIC-HS: ``SMIC/HS/s{N}/micro/{emotion}/s{N}_{po|ne|sur}_{kk}/image{N:06d}.bmp``,
  no sheet: the folder is the label, the clip holds onset to offset only and
  there is no apex annotation (readers spot it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from client.datasets.label_schemes import MEGC2019_EXCLUDED

from ..casme2 import CASME2_COLUMNS, deterministic_xlsx
from .spec import LabSpec

LAB_FOLDERS = {"casme2": "CASME2", "samm": "SAMM", "smic": "SMIC"}
CASME2_SHEET = "CASME2-coding-megc-like.xlsx"
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_COLUMNS = (
    "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
    "Duration", "Type", "Action Units", "Notes", "Estimated Emotion",
)  # fmt: skip
SAMM_TITLE_ROWS = (("SAMM Micro-Expression Database (megc-like, synthetic)",), ())
# Native emotions that the composite maps to each class, with the share of each
# in the real release's composite clips.
NATIVE_EMOTIONS: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {
    "casme2": {
        "negative": (("disgust", 0.7), ("repression", 0.3)),
        "positive": (("happiness", 1.0),),
        "surprise": (("surprise", 1.0),),
    },
    "samm": {
        "negative": (
            ("Anger", 0.62),
            ("Contempt", 0.13),
            ("Disgust", 0.1),
            ("Fear", 0.09),
            ("Sadness", 0.06),
        ),
        "positive": (("Happiness", 1.0),),
        "surprise": (("Surprise", 1.0),),
    },
}
SMIC_CODES = {"positive": "po", "negative": "ne", "surprise": "sur"}


@dataclass(frozen=True)
class WrittenClip:
    """What one written clip contributes to its release's sheet and to the ground truth."""

    dataset: str
    subject: int  # 1-based, within the lab
    name: str  # the release's file name of the clip
    onset: int  # absolute frame numbers, as the sheet states them
    apex: int
    offset: int
    native_emotion: str
    label: str
    action_units: str
    agrees: bool
    amplitude_px: float


def native_emotion(dataset: str, label: str, rng: np.random.Generator) -> str:
    if dataset == "smic":
        return label
    names, weights = zip(*NATIVE_EMOTIONS[dataset][label], strict=True)
    return str(names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))])


def clip_name(dataset: str, subject: int, label: str, index: int, inducement: int) -> str:
    """The release's name for a subject's ``index``-th clip (0-based)."""
    if dataset == "casme2":
        name = f"EP{inducement:02d}_{index + 1:02d}"
        # A name on MEGC2019's exclusion list would drop the clip from the composite.
        if f"casme2/sub{subject:02d}/{name}" in MEGC2019_EXCLUDED["casme2"]:
            name += "s"
        return name
    if dataset == "samm":
        return f"{subject:03d}_{inducement}_{index + 1}"
    return f"s{subject}_{SMIC_CODES[label]}_{index + 1:02d}"


def clip_folder(root: Path, lab: LabSpec, subject: int, label: str, name: str) -> Path:
    folder = root / LAB_FOLDERS[lab.dataset]
    if lab.dataset == "casme2":
        return folder / "CASME2_RAW_selected" / f"sub{subject:02d}" / name
    if lab.dataset == "samm":
        return folder / "SAMM" / f"{subject:03d}" / name
    return folder / "HS" / f"s{subject}" / "micro" / label / name


def frame_file(lab: LabSpec, subject: int, number: int) -> str:
    if lab.dataset == "casme2":
        return f"img{number}.jpg"
    if lab.dataset == "samm":
        return f"{subject:03d}_{number:05d}.jpg"
    return f"image{number:06d}.bmp"


def write_clip_frames(
    folder: Path, lab: LabSpec, subject: int, frames: np.ndarray, first_number: int
) -> None:
    """Frames as the release stores them: JPEG at the lab's quality, or lossless BMP;
    greyscale labs write one channel."""
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, lab.jpeg_quality] if lab.jpeg_quality else []
    for i, frame in enumerate(frames):
        image = frame if lab.colour else frame[..., 0]
        path = folder / frame_file(lab, subject, first_number + i)
        if not cv2.imwrite(str(path), image, params):
            raise OSError(f"{path}: cv2.imwrite failed")


def write_sheet(root: Path, lab: LabSpec, clips: Sequence[WrittenClip]) -> Path | None:
    """The lab's annotation spreadsheet (SMIC has none); returns its path."""
    from openpyxl import Workbook

    if lab.dataset == "smic":
        return None
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    if lab.dataset == "casme2":
        sheet.append(list(CASME2_COLUMNS))
        for c in clips:
            sheet.append(
                [c.subject, c.name, c.onset, c.apex, c.offset, c.action_units, c.native_emotion]
            )
        path = root / LAB_FOLDERS[lab.dataset] / CASME2_SHEET
    else:
        for row in SAMM_TITLE_ROWS:
            sheet.append(list(row))
        sheet.append(list(SAMM_COLUMNS))
        for c in clips:
            inducement = int(c.name.split("_")[1])
            duration = c.offset - c.onset + 1
            sheet.append(
                [
                    f"{c.subject:03d}",
                    c.name,
                    inducement,
                    c.onset,
                    c.apex,
                    c.offset,
                    duration,
                    "Micro - 1/2",
                    c.action_units,
                    "",
                    c.native_emotion,
                ]
            )
        path = root / LAB_FOLDERS[lab.dataset] / SAMM_SHEET
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(deterministic_xlsx(workbook))
    return path
