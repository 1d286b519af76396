"""Reading frames from a clip source: a video file or a folder of frame images.

Conventions (see DESIGN.md, "Numbering and naming rules"):

* Frame folders: a frame's number is the LAST run of digits in its file name
  ("img12.jpg" -> 12, "reg_img12.jpg" -> 12, SAMM "006_05562.jpg" -> 5562), and
  frames are ordered by that number, never by the string ("img2" before "img10").
  Annotation frame numbers are these absolute numbers, not folder positions.
* Videos: frame numbers are 0-based positions.  Videos are decoded sequentially
  from the start; seeking (CAP_PROP_POS_FRAMES) is not used because many codecs
  only seek to key frames and would silently return the wrong frame.

All problems raise `ClipError` naming the file and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from client.datasets.clip_record import (
    ApexOutsideClip,
    ClipError,
    ClipRecord,
    InvalidAnnotation,
    frame_order_problem,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm"}
)

_LAST_DIGITS = re.compile(r"(\d+)(?!.*\d)")


class MissingSource(ClipError):
    category = "missing_file"


class UnreadableFrame(ClipError):
    category = "unreadable_frame"


class TruncatedVideo(ClipError):
    category = "truncated_video"


class MissingFrames(ClipError):
    category = "missing_frames"


def _resolve(record_or_source: ClipRecord | Path | str) -> tuple[Path, str | None, dict[int, str]]:
    """Source path, clip id, and a frame-number -> role name map for messages."""
    if isinstance(record_or_source, ClipRecord):
        record = record_or_source
        roles: dict[int, str] = {}
        # Where two roles share a frame number, the later one (apex) names it.
        for name, value in (
            ("onset", record.onset),
            ("offset", record.offset),
            ("apex", record.apex),
        ):
            if value is not None:
                roles[value] = name
        return Path(record.source), record.clip_id, roles
    return Path(record_or_source), None, {}


def _describe(number: int, roles: dict[int, str]) -> str:
    role = roles.get(number)
    return f"{role} {number}" if role else f"frame {number}"


def frame_number_of(name: str) -> int | None:
    """The frame number encoded in a file name (last run of digits), or None."""
    match = _LAST_DIGITS.search(Path(name).stem)
    return int(match.group(1)) if match else None


def _folder_index(folder: Path, clip_id: str | None) -> dict[int, Path]:
    """Map frame number -> image file for a frame folder."""
    index: dict[int, Path] = {}
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise UnreadableFrame(
            f"cannot list frame folder: {exc.strerror or exc}", clip_id, folder
        ) from exc
    for entry in entries:
        if entry.suffix.lower() not in IMAGE_EXTENSIONS or entry.name.startswith("."):
            continue
        number = frame_number_of(entry.name)
        if number is None:
            continue  # e.g. "cover.jpg": not a frame of the sequence
        if number in index:
            first, second = sorted((index[number].name, entry.name))
            raise UnreadableFrame(
                f"two files claim frame number {number}: {first} and {second}", clip_id, folder
            )
        index[number] = entry
    if not index:
        raise MissingFrames(
            f"frame folder has no numbered {'/'.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))} images",
            clip_id,
            folder,
        )
    return dict(sorted(index.items()))


def _check_source(source: Path, clip_id: str | None) -> None:
    if not source.exists():
        raise MissingSource("file or folder not found", clip_id, source)
    if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        raise UnreadableFrame(
            "is a single image; expected a video file or a frame folder", clip_id, source
        )


def read_image(path: Path, clip_id: str | None = None) -> np.ndarray:
    """Decode one image file as BGR uint8, or raise ClipError naming it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths on Windows
    except OSError as exc:
        raise UnreadableFrame(f"cannot read image: {exc.strerror or exc}", clip_id, path) from exc
    if data.size == 0:
        raise UnreadableFrame("image file is empty (0 bytes)", clip_id, path)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableFrame(
            f"cannot decode image ({data.size} bytes; corrupt or not an image)", clip_id, path
        )
    return image


def list_frame_numbers(
    record_or_source: ClipRecord | Path | str, verify: bool = False
) -> list[int]:
    """All frame numbers available in a source.

    For folders these are the numbers in the file names.  For videos the
    container's frame count is used (cheap); it can be wrong for truncated or
    variable-rate files, so pass `verify=True` to count by decoding, which is also
    done automatically when the container reports no count.
    """
    source, clip_id, _ = _resolve(record_or_source)
    _check_source(source, clip_id)
    if source.is_dir():
        return list(_folder_index(source, clip_id))
    capture = _open_video(source, clip_id)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if verify or count <= 0:
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    return list(range(count))


def _open_video(source: Path, clip_id: str | None) -> cv2.VideoCapture:
    if source.stat().st_size == 0:
        raise UnreadableFrame("video file is empty (0 bytes)", clip_id, source)
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        capture.release()
        raise UnreadableFrame(
            "cannot open video (corrupt file or unsupported codec)", clip_id, source
        )
    return capture


def read_frames(
    record_or_source: ClipRecord | Path | str, frame_numbers: Sequence[int]
) -> list[np.ndarray]:
    """Return the requested frames (BGR uint8) in the order requested."""
    source, clip_id, roles = _resolve(record_or_source)
    numbers = [int(n) for n in frame_numbers]
    negative = [n for n in numbers if n < 0]
    if negative:
        raise MissingFrames(f"negative frame number {negative[0]} requested", clip_id, source)
    _check_source(source, clip_id)
    if not numbers:
        return []
    if source.is_dir():
        return _read_folder_frames(source, numbers, clip_id, roles)
    return _read_video_frames(source, numbers, clip_id, roles)


def _read_folder_frames(
    folder: Path, numbers: list[int], clip_id: str | None, roles: dict[int, str]
) -> list[np.ndarray]:
    index = _folder_index(folder, clip_id)
    missing = sorted({n for n in numbers if n not in index})
    if missing:
        first, last = next(iter(index)), next(reversed(index))
        wanted = ", ".join(_describe(n, roles) for n in missing[:5]) + (
            " ..." if len(missing) > 5 else ""
        )
        raise MissingFrames(
            f"no image for {wanted} (folder holds frames {first}-{last}, {len(index)} files)",
            clip_id,
            folder,
        )
    cache: dict[int, np.ndarray] = {}
    for n in numbers:
        if n not in cache:
            cache[n] = read_image(index[n], clip_id)
    return [cache[n] for n in numbers]


def _video_ended(position: int, requested: str, header_count: int) -> str:
    """Why a video ran out: a cut file (the container promised more frames) or
    an annotation past the end of an intact file."""
    if header_count > position:
        cause = f"the container lists {header_count} frames: file truncated or corrupt"
    elif position == 0:
        cause = "no frame could be decoded: corrupt file or unsupported codec"
    else:
        cause = f"the video has {position} frames (0-{position - 1}): annotation past its end?"
    return f"video ended at frame {position}, {requested} requested ({cause})"


def _read_video_frames(
    video: Path, numbers: list[int], clip_id: str | None, roles: dict[int, str]
) -> list[np.ndarray]:
    wanted = set(numbers)
    last_wanted = max(wanted)
    found: dict[int, np.ndarray] = {}
    capture = _open_video(video, clip_id)
    header_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    try:
        position = 0
        while position <= last_wanted:
            # grab() decodes without the colour conversion; retrieve() only for
            # the frames that are actually needed.
            if not capture.grab():
                break
            if position in wanted:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break
                found[position] = frame
            position += 1
    finally:
        capture.release()
    if len(found) < len(wanted):
        first_missing = min(wanted - found.keys())
        raise TruncatedVideo(
            _video_ended(position, _describe(first_missing, roles), header_count), clip_id, video
        )
    return [found[n] for n in numbers]


def iter_frames(
    record_or_source: ClipRecord | Path | str, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_number, BGR frame) for start <= frame_number < stop.

    `stop` is exclusive like `range` (use `offset + 1` for a whole annotated
    clip); None reads to the end.  Frames are decoded lazily, one at a time, so a
    long clip never sits in memory.  For folders only the frames present are
    yielded; a video that ends before `stop - 1` raises ClipError.
    """
    source, clip_id, roles = _resolve(record_or_source)
    if start < 0:
        raise MissingFrames(f"negative start frame {start}", clip_id, source)
    _check_source(source, clip_id)
    if source.is_dir():
        for number, path in _folder_index(source, clip_id).items():
            if number >= start and (stop is None or number < stop):
                yield number, read_image(path, clip_id)
        return
    capture = _open_video(source, clip_id)
    header_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    try:
        position = 0
        while stop is None or position < stop:
            if not capture.grab():
                if stop is not None:
                    raise TruncatedVideo(
                        _video_ended(position, _describe(stop - 1, roles), header_count),
                        clip_id,
                        source,
                    )
                return
            if position >= start:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise UnreadableFrame(f"cannot decode frame {position}", clip_id, source)
                yield position, frame
            position += 1
    finally:
        capture.release()


def check_clip_frames(record: ClipRecord, every_frame: bool = True) -> list[int]:
    """Validate a record's annotation against the frames on disk; returns the
    frame numbers from onset to offset.

    Catches, before any decoding, what would otherwise fail half-way through
    preprocessing: frames out of order, an apex outside the clip, onset or
    offset without an image, and, when `every_frame` (the apex is to be
    spotted, or the model reads the whole clip), gaps between onset and
    offset (a frame folder with a hole would make the flow jump).  For videos
    the container's frame count is trusted here; a truncated file is caught
    when it is decoded.
    """
    problem = frame_order_problem(record.onset, record.apex, record.offset)
    if problem:
        raise InvalidAnnotation(problem, record.clip_id, record.source)
    available = list_frame_numbers(record)
    if not available:
        raise MissingFrames("no frames found", record.clip_id, record.source)
    first, last = available[0], available[-1]
    span = f"the clip holds frames {first}-{last}"
    if record.apex is not None and not first <= record.apex <= last:
        raise ApexOutsideClip(
            f"apex {record.apex} is outside the clip ({span})", record.clip_id, record.source
        )
    present = set(available)
    for name, number in (("onset", record.onset), ("offset", record.offset)):
        if number not in present:
            raise MissingFrames(
                f"no frame for {name} {number} ({span})", record.clip_id, record.source
            )
    if record.apex is not None and record.apex not in present:
        raise MissingFrames(
            f"no frame for apex {record.apex} ({span})", record.clip_id, record.source
        )
    wanted = range(record.onset, record.offset + 1)
    holes = [n for n in wanted if n not in present]
    if holes and every_frame:
        shown = ", ".join(map(str, holes[:5])) + (" ..." if len(holes) > 5 else "")
        raise MissingFrames(
            f"{len(holes)} frame(s) missing between onset {record.onset} and offset {record.offset}: {shown}",
            record.clip_id,
            record.source,
        )
    return list(wanted)
