"""CAS(ME)^3 Part A.

Sheet `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (in `part_A/annotation/`
as unpacked): Subject, Filename, Onset, Apex, Offset, AU and emotion columns,
and where present `Expression type` (macro-expression rows are left out).
Frames: `{Subject}/{Filename}/color/{N}.jpg` under
`part_A/data/part_A_split/part_A/` as unpacked (meb calls the same folder
`ME_A`).  One Filename is a long recording holding several micro-expressions,
so the onset is part of the clip id.
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
    frame_roots = (
        "part_A/data/part_A_split/part_A",
        "data/part_A_split/part_A",
        "data/part_A",
        "part_A",
        "ME_A",
        ".",
    )
    layout = "{Subject}/{Filename}/color/{N}.jpg"
    events_share_folder = True

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        subject = values["subject"]
        return ClipLocation(subject, frames_root / subject / values["filename"] / "color")
