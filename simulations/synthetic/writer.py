"""Writing synthetic clips to disk: lossless AVI videos or image folders.

Micro-movements are 1.5-3 px, so a lossy codec (MJPG, H.264 at default
quality) would bury them in compression artefacts; videos are therefore
written with a lossless codec and checked to round-trip exactly through
``cv2.VideoCapture``, the reader the real-data pipeline uses.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

#: Codecs tried in order after the preferred one.  HuffYUV and FFV1 are
#: lossless for 8-bit BGR (HuffYUV encodes ~4x faster, FFV1 makes ~25 %
#: smaller files); 'png ' (MPNG) is lossless but slow; MJPG is lossy and
#: only a last resort.
LOSSLESS_FOURCCS: tuple[str, ...] = ("HFYU", "FFV1", "png ")
LAST_RESORT_FOURCC = "MJPG"


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video as a ``(T, H, W, 3)`` uint8 BGR array."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"{path}: cannot be opened by cv2.VideoCapture")
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise OSError(f"{path}: no frames could be decoded")
    return np.stack(frames)


def _write(path: Path, frames: np.ndarray, fps: float, fourcc: str) -> bool:
    h, w = frames.shape[1:3]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h), True)
    if not vw.isOpened():
        return False
    try:
        for f in frames:
            vw.write(f)
    finally:
        vw.release()
    return True


@functools.cache
def lossless_fourcc(preferred: str = "HFYU") -> str:
    """The first codec that writes an AVI which reads back bit-exactly.

    Probed once per process on a small random clip, because whether a codec
    is available (and lossless for BGR) depends on the FFmpeg that the
    OpenCV wheel bundles.  Falls back to MJPG, with a warning, if none is.
    """
    probe = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    candidates = (preferred,) + tuple(c for c in LOSSLESS_FOURCCS if c != preferred)
    with tempfile.TemporaryDirectory(prefix="fedmer-codec-") as tmp:
        for i, cc in enumerate(candidates):
            path = Path(tmp) / f"probe{i}.avi"
            try:
                if _write(path, probe, 25, cc) and np.array_equal(read_video(path), probe):
                    return cc
            except OSError:
                continue
    warnings.warn(
        f"none of {candidates} writes lossless AVI with this OpenCV build; using lossy {LAST_RESORT_FOURCC}",
        RuntimeWarning,
        stacklevel=2,
    )
    return LAST_RESORT_FOURCC


def write_video(path: str | Path, frames: np.ndarray, fps: float, fourcc: str | None = None) -> str:
    """Write ``frames`` (``T x H x W x 3`` uint8 BGR) to an AVI; returns the fourcc used.

    The output bytes depend only on the frames, fps and codec (no
    timestamps are embedded), so identical input gives identical files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cc = fourcc or lossless_fourcc()
    if not _write(path, np.ascontiguousarray(frames), fps, cc):
        raise OSError(f"{path}: cv2.VideoWriter could not open codec {cc!r}")
    return cc


def frame_name(number: int, ext: str = "jpg", prefix: str = "img") -> str:
    """``img{N}.{ext}``, the CASME II naming (N is the absolute frame number)."""
    return f"{prefix}{number}.{ext}"


def write_frames(
    folder: str | Path,
    frames: np.ndarray,
    first_number: int = 1,
    ext: str = "jpg",
    jpeg_quality: int = 95,
) -> list[Path]:
    """Write one image per frame as ``folder/img{N}.{ext}``, N from ``first_number``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if ext in ("jpg", "jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif ext == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ValueError(f"unsupported frame extension {ext!r} (use 'jpg' or 'png')")
    paths = []
    for i, f in enumerate(frames):
        p = folder / frame_name(first_number + i, ext)
        if not cv2.imwrite(str(p), f, params):
            raise OSError(f"{p}: cv2.imwrite failed")
        paths.append(p)
    return paths
