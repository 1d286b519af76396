"""Repairing the annotation slips that real releases ship with.

Every release has rows whose frame numbers disagree with its own frame
folders: an offset one past the last frame (SAMM), an offset typed before the
apex (CASME II), an apex of -1 or "/" where none was coded, a few frames
missing inside a clip.  The meb library patches such rows by hand, one index
at a time; here the same kinds of slip are repaired by rule, against the
frames on disk, and every repair is written down so a researcher sees exactly
which rows were changed and how:

* an offset past the clip's last frame is clamped to it;
* an offset before the apex (or the onset) while the folder holds the frames
  up to the apex becomes the folder's last frame (CASME II and SAMM folders
  hold exactly the clip);
* an apex outside the frames on disk is left unlabelled, to be spotted;
* frames missing between onset and offset are tolerated when the apex is
  labelled, because the features need only the onset and apex frames
  (`prepare` checks again when a model needs every frame).

What cannot be repaired (no onset frame, onset after the last frame) stays a
ClipError, and the row is skipped with that reason.
"""

from __future__ import annotations

import dataclasses

from client.datasets.clip_record import ClipRecord, InvalidAnnotation, frame_order_problem
from client.datasets.frames import MissingFrames, list_frame_numbers


@dataclasses.dataclass(frozen=True)
class Repair:
    """One change made to a row, and why."""

    category: str  # "clamped_offset", "offset_before_apex", "spotted_apex", "frames_missing"
    note: str


def repaired(record: ClipRecord) -> tuple[ClipRecord, list[Repair]]:
    """The record made consistent with its frames on disk, and what was changed.

    Raises ClipError when the row cannot describe a clip of these frames."""
    available = list_frame_numbers(record)
    present = set(available)
    first, last = available[0], available[-1]
    span = f"the clip's frames on disk are {first}-{last}"
    onset, apex, offset = record.onset, record.apex, record.offset
    repairs: list[Repair] = []
    if onset not in present:
        raise MissingFrames(f"no frame for onset {onset} ({span})", record.clip_id, record.source)
    if offset > last:
        repairs.append(
            Repair(
                "clamped_offset",
                f"offset {offset} is past the last frame {last}: clamped to {last}",
            )
        )
        offset = last
    needed = max(onset, apex if apex is not None and apex in present else onset)
    if offset < needed <= last:
        what = "apex" if apex is not None and apex > onset and needed == apex else "onset"
        repairs.append(
            Repair(
                "offset_before_apex",
                f"offset {offset} is before the {what} {needed}: set to the folder's last frame {last}",
            )
        )
        offset = last
    if offset not in present:
        below = max(n for n in available if n <= offset)
        if below < needed:
            raise MissingFrames(
                f"no frame for offset {offset} ({span})", record.clip_id, record.source
            )
        repairs.append(
            Repair(
                "clamped_offset",
                f"no frame for offset {offset}: clamped to the last frame before it, {below}",
            )
        )
        offset = below
    if apex is not None and not (onset <= apex <= offset and apex in present):
        repairs.append(
            Repair(
                "spotted_apex",
                f"apex {apex} is not among the clip's frames {onset}-{offset}: left unlabelled, to be spotted",
            )
        )
        apex = None
    problem = frame_order_problem(onset, apex, offset)
    if problem:
        raise InvalidAnnotation(problem, record.clip_id, record.source)
    holes = [n for n in range(onset, offset + 1) if n not in present]
    if holes:
        listed = ", ".join(map(str, holes[:5])) + (" ..." if len(holes) > 5 else "")
        if apex is None:
            raise MissingFrames(
                f"{len(holes)} frame(s) missing between onset {onset} and offset {offset}: {listed} "
                "(the apex is unlabelled, and spotting it needs every frame)",
                record.clip_id,
                record.source,
            )
        repairs.append(
            Repair(
                "frames_missing",
                f"{len(holes)} frame(s) missing between onset {onset} and offset {offset} ({listed}): "
                "kept, the features need only the onset and apex frames",
            )
        )
    return dataclasses.replace(record, apex=apex, offset=offset), repairs
