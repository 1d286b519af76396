"""CASME II, raw and "Cropped" releases.

Sheet `CASME2-coding-*.xlsx`: Subject, Filename, OnsetFrame, ApexFrame,
OffsetFrame, Action Units, Estimated Emotion.  Frames:
`CASME2_RAW_selected/sub{XX}/{Filename}/img{N}.jpg` (raw) or
`Cropped/sub{XX}/{Filename}/reg_img{N}.jpg` (cropped).  The sheet's Subject may
be unpadded ("1") while the folder is always "sub01".  Both releases hold the
same people, so both use the dataset namespace "casme2".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from client.datasets.release import ClipLocation, SheetRelease, sheet_columns
from client.datasets.subject_ids import padded_subject


class Casme2Reader(SheetRelease):
    kind = "casme2"
    dataset = "casme2"
    fps = 200.0
    sheet_glob = "CASME2-coding-*.xlsx"
    columns = sheet_columns()
    frame_roots = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW")
    layout = "sub{XX}/{Filename}/img{N}.jpg"

    def locate(self, frames_root: Path, values: Mapping[str, str]) -> ClipLocation:
        subject = padded_subject(values["subject"], "sub", 2)
        return ClipLocation(subject, frames_root / subject / values["filename"])


class Casme2CroppedReader(Casme2Reader):
    kind = "casme2-cropped"
    pre_cropped = True
    frame_roots = ("Cropped", "CASME2_Cropped", "Cropped-updated/Cropped", "Cropped_original")
    layout = "sub{XX}/{Filename}/reg_img{N}.jpg"
