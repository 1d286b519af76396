"""SAMM (micro-expressions).

Sheet `SAMM_Micro_FACS_Codes_v2.xlsx`: title rows first, then the header row
(the one holding "Filename"): Subject, Filename, Inducement Code, Onset Frame,
Apex Frame, Offset Frame, Duration, Type, Action Units, Notes, Estimated
Emotion.  Frames: `SAMM/{Subject:03d}/{Filename}/{Subject}_{N}.jpg`, N absolute.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from client.datasets.release import ClipLocation, SheetRelease, sheet_columns
from client.datasets.subject_ids import padded_subject


class SammReader(SheetRelease):
    kind = "samm"
    dataset = "samm"
    fps = 200.0
    sheet_glob = "SAMM_Micro_FACS_Codes*.xlsx"
    columns = sheet_columns(onset="Onset Frame", apex="Apex Frame", offset="Offset Frame")
    frame_roots = ("SAMM", ".")
    layout = "{Subject:03d}/{Filename}/{Subject}_{N}.jpg"

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        subject = padded_subject(values["subject"], "", 3)
        return ClipLocation(subject, frames_root / subject / values["filename"])
