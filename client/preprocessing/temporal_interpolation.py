"""Fixed-length flow sequences for sequence models (e.g. 16-frame 3D-CNN input).

Clips differ in length (CASME II at 200 fps vs CAS(ME)^3 at 30 fps), while 3D
models want a fixed number of time steps.  The clip from onset to offset is
resampled to `length` frames by linear interpolation in time between the two
nearest real frames (the simple form of the temporal interpolation model used
in MER), then the flow of every resampled frame relative to the onset is
computed, so channel t holds the face's displacement at 'time' t/(length-1) of
the expression.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from client.preprocessing.optical_flow import compute_flow, remove_rigid_motion, shrink_flow


def resample_frames(frames: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """`length` frames evenly spaced over `frames` (first and last kept exactly)."""
    if length < 2:
        raise ValueError(f"sequence length must be >= 2, got {length}")
    if not frames:
        raise ValueError("cannot resample an empty clip")
    n = len(frames)
    out = []
    for position in np.linspace(0.0, n - 1, length):
        lo = int(np.floor(position))
        hi = min(lo + 1, n - 1)
        w = float(position - lo)
        if w < 1e-6 or lo == hi:
            out.append(frames[lo].copy())
        else:
            mixed = (1.0 - w) * frames[lo].astype(np.float32) + w * frames[hi].astype(np.float32)
            out.append(np.clip(np.rint(mixed), 0, 255).astype(frames[lo].dtype))
    return out


def flow_sequence(
    faces_gray: Sequence[np.ndarray],
    length: int,
    flow_method: str,
    size: int,
    remove_global_motion: bool = True,
) -> np.ndarray:
    """(length, 2, size, size) float32 flow from the onset to each resampled frame.

    Vectors are in pixels of the `size` grid, like the 2-D features.
    """
    frames = resample_frames(faces_gray, length)
    out = np.zeros((length, 2, size, size), dtype=np.float32)
    for t in range(1, length):
        flow = compute_flow(frames[0], frames[t], flow_method)
        if remove_global_motion:
            flow, _ = remove_rigid_motion(flow)
        out[t] = shrink_flow(flow, size)[0].transpose(2, 0, 1)
    return out
