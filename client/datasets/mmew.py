"""MMEW (micro-expressions).

Sheet `MMEW_Micro_Exp.xlsx` with CASME II-like columns.  Frames are grouped by
emotion: `Micro_Expression/{emotion}/{Filename}/{N}.jpg`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from client.datasets.casme2 import Casme2Reader
from client.datasets.release import ClipLocation


class MmewReader(Casme2Reader):
    kind = "mmew"
    dataset = "mmew"
    fps = 90.0
    sheet_glob = "MMEW_Micro_Exp*.xlsx"
    frame_roots = ("Micro_Expression", "MMEW/Micro_Expression")

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        # The emotion folder is the label as written in the sheet (e.g. "happiness").
        return ClipLocation(
            values["subject"], frames_root / values["label"].strip() / values["filename"]
        )
