"""SMIC-HS: no annotation file; the folder tree is the annotation.

`HS/s{N}/micro/{positive,negative,surprise}/{clip}/image{N}.bmp`: the label is
the emotion folder's name, onset and offset are the clip's first and last
frames, and there is no apex label (prepare spots it).  The release unpacks
the tree as `SMIC_all_raw/HS` (and face crops as `SMIC_all_cropped/HS`); any
`HS` folder holding `s{N}/micro/` in the tree is found.
"""

from __future__ import annotations

from pathlib import Path

from client.datasets.clip_record import ClipError, SkippedClip
from client.datasets.frames import list_frame_numbers
from client.datasets.manifest import ManifestError, ManifestTable
from client.datasets.release import ReleaseReader, validated
from client.datasets.release_tree import candidate_roots, shown

EMOTION_FOLDERS = ("negative", "positive", "surprise")


class SmicReader(ReleaseReader):
    kind = "smic"
    dataset = "smic"
    fps = 100.0
    frame_roots = ("HS", "SMIC-HS", "SMIC_all_raw/HS", "SMIC/HS", "SMIC_all_cropped/HS", ".")

    def _hs_root(self, root: Path) -> Path | None:
        for folder in candidate_roots(root, self.frame_roots):
            if any(folder.glob("s*/micro")):
                return folder
        return None

    def looks_like(self, root: Path) -> bool:
        return self._hs_root(root) is not None

    def read(self, root: Path | str) -> ManifestTable:
        root = Path(root)
        hs = self._hs_root(root)
        if hs is None:
            tried = shown(root, candidate_roots(root, self.frame_roots))
            raise ManifestError(
                f"{root}: not an SMIC-HS tree (expected HS/s{{N}}/micro/{{emotion}}/{{clip}}/; "
                f"tried {tried})"
            )
        table = ManifestTable(path=hs)
        for subject_dir in sorted(hs.glob("s*/"), key=lambda p: (len(p.name), p.name)):
            for emotion in EMOTION_FOLDERS:
                for clip_dir in sorted(
                    p for p in (subject_dir / "micro" / emotion).glob("*") if p.is_dir()
                ):
                    self._add(table, subject_dir.name, emotion, clip_dir)
        return table

    def _add(self, table: ManifestTable, subject: str, emotion: str, clip_dir: Path) -> None:
        clip_id = f"{self.dataset}/{subject}/{clip_dir.name}"
        try:
            numbers = list_frame_numbers(clip_dir)
            record = self.record(
                subject, clip_dir.name, clip_dir, numbers[0], None, numbers[-1], emotion
            )
            table.clips.append(validated(record))
        except ClipError as error:
            table.skipped.append(
                SkippedClip(clip_id, str(error.with_context(clip_id, clip_dir)), error.category)
            )
