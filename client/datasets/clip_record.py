"""One annotated micro-expression clip, and the error raised when a clip is unusable.

Every dataset reader (generic manifest, CASME II, SAMM, ...) produces `ClipRecord`s;
everything downstream (frame reading, preprocessing, cache, training) consumes only
this type, so adding a dataset never touches the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClipRecord:
    """An annotated clip on the device.

    `subject` is namespaced as "dataset/subject" (e.g. "casme2/sub01") because
    subject "01" of two datasets are different people, and LOSO folds and
    subject-level privacy accounting group by this string.  `clip_id` must be
    unique across everything a device prepares; readers prefix it with the
    dataset for the same reason.

    Frame numbers follow the dataset's own convention: for frame folders they are
    the absolute numbers in the file names, for video files 0-based positions.
    """

    dataset: str
    subject: str
    clip_id: str
    source: Path  # a video file or a folder of frame images
    onset: int
    apex: int | None  # None for datasets without an apex label (SMIC)
    offset: int
    label: str
    fps: float | None
    action_units: str = ""


@dataclass(frozen=True)
class SkippedClip:
    """A clip (or manifest row) that was left out, and why.

    `clip_id` holds the clip id when it is known, otherwise a row reference such
    as "manifest.csv row 7".  `category` is a short, stable tag used to group
    reasons in summaries ("no_face", "missing_file", ...).
    """

    clip_id: str
    reason: str
    category: str = "other"


class ClipError(Exception):
    """A single clip cannot be used; the reason is meant for a human.

    Raised by frame readers and preprocessing; caught per clip by `prepare`, which
    records the clip as skipped and carries on with the others.  `str()` always
    names the clip and/or file together with what is wrong.
    """

    category = "clip_error"

    def __init__(
        self,
        reason: str,
        clip_id: str | None = None,
        path: Path | str | None = None,
    ) -> None:
        self.reason = reason
        self.clip_id = clip_id
        self.path = Path(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.clip_id:
            where.append(f"clip {self.clip_id!r}")
        if self.path is not None:
            where.append(str(self.path))
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def with_context(self, clip_id: str | None = None, path: Path | str | None = None) -> ClipError:
        """Return a copy with clip id / path filled in where they were unknown."""
        return type(self)(
            self.reason,
            clip_id=self.clip_id or clip_id,
            path=self.path if self.path is not None else path,
        )

    # Exceptions cross process boundaries in `prepare`; the default pickling of
    # Exception only replays `args`, which would lose clip_id and path.
    def __reduce__(self):  # type: ignore[override]
        return (type(self), (self.reason, self.clip_id, self.path))


class InvalidAnnotation(ClipError):
    """Onset/apex/offset cannot describe a clip (order, negative numbers)."""

    category = "bad_annotation"


class ApexOutsideClip(ClipError):
    category = "apex_outside_clip"


def frame_order_problem(onset: int, apex: int | None, offset: int) -> str | None:
    """Why (onset, apex, offset) cannot describe a clip, or None when they can.

    Shared by manifest reading and `prepare`, so a bad annotation gets the same
    wording wherever it is caught.  A missing apex is not an ordering problem.
    """
    for name, value in (("onset", onset), ("apex", apex), ("offset", offset)):
        if value is not None and value < 0:
            return f"{name} {value} is negative"
    if onset > offset:
        return f"onset {onset} > offset {offset}"
    if apex is not None:
        if onset > apex:
            return f"onset {onset} > apex {apex}"
        if apex > offset:
            return f"apex {apex} > offset {offset}"
    return None
