"""MMEW (micro-expressions).

Sheet `MMEW_Micro_Exp.xlsx` with CASME II-like columns.  Frames are grouped by
emotion: `Micro_Expression/{emotion}/{Filename}/{N}.jpg`.  The folder is not
always the sheet's word: clips labelled `others` sit under `repression/`, so a
clip missing from its label's folder is looked for in the other emotion
folders (Filenames are unique), and where it was found is recorded.
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
    layout = "{emotion}/{Filename}/{N}.jpg"

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        # The emotion folder is the label as written in the sheet (e.g. "happiness").
        label, name = values["label"].strip(), values["filename"]
        folder = frames_root / label / name
        if not folder.is_dir():
            for emotion in sorted(p for p in frames_root.iterdir() if p.is_dir()):
                if (emotion / name).is_dir():
                    note = (
                        f"frames found under {emotion.name}/, not under the label's folder {label}/"
                    )
                    return ClipLocation(values["subject"], emotion / name, note)
        return ClipLocation(values["subject"], folder)
