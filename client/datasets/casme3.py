"""CAS(ME)^3 Part A.

Sheet `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`: Subject, Filename, Onset,
Apex, Offset, AU and emotion columns.  Frames: `{Subject}/{Filename}/color/{N}.jpg`.
One Filename is a long recording holding several micro-expressions, so the
onset is part of the clip id.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from client.datasets.release import ClipLocation, SheetRelease, sheet_columns


class Casme3Reader(SheetRelease):
    kind = "casme3"
    dataset = "casme3"
    fps = 30.0
    sheet_glob = "cas(me)3_part_A*.xlsx"
    columns = sheet_columns(onset="Onset", apex="Apex", offset="Offset", label="emotion")
    frame_roots = ("data/part_A", "part_A", ".")
    events_share_folder = True

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        subject = values["subject"]
        return ClipLocation(subject, frames_root / subject / values["filename"] / "color")
