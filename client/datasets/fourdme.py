"""4DME (micro-expressions, 2-D texture frames).

Sheet `4DME_Labelling_Micro_release v1.xlsx`: sub_ID, fold_name, Emotion,
Onset, Apex, Offset, AUs.  DESIGN.md gives no frame layout for 4DME; this reader
expects one folder of numbered frames per clip, `{sub_ID}/{fold_name}/`, under
the root or under its `2D`/`gray` folder.  A `fold_name` can hold several
events, so the onset is part of the clip id.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from client.datasets.release import ClipLocation, SheetRelease, sheet_columns


class FourDmeReader(SheetRelease):
    kind = "4dme"
    dataset = "4dme"
    fps = 60.0
    sheet_glob = "4DME_Labelling_Micro_release*.xlsx"
    columns = sheet_columns(
        subject="sub_ID",
        filename="fold_name",
        onset="Onset",
        apex="Apex",
        offset="Offset",
        label="Emotion",
    )
    optional_columns = {"action_units": ("AUs", "AU", "Action Units")}
    frame_roots = ("2D", "gray", ".")
    events_share_folder = True

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        return ClipLocation(values["subject"], frames_root / values["subject"] / values["filename"])
