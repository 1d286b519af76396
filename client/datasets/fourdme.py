"""4DME (micro-expressions, 2-D texture frames).

Sheet `4DME_Labelling_Micro_release v1.xlsx`: sub_ID, fold_name, Emotion,
Onset, Apex, Offset, AUs.  As shipped, the frames are one folder of numbered
greyscale frames per clip, `gray_micro/{sub_ID}/{fold_name}/` (face crops in
`gray_micro_crop/`, read when `gray_micro/` is absent); older copies put the
same tree under `2D/` or `gray/`.  A `fold_name` can hold several events, so
the onset is part of the clip id.
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
    frame_roots = ("gray_micro", "gray_micro_crop", "2D", "gray", ".")
    layout = "{sub_ID}/{fold_name}/{N}.jpg"
    events_share_folder = True

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        return ClipLocation(values["subject"], frames_root / values["subject"] / values["filename"])
