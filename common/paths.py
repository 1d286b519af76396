"""Where fedmer keeps data it generates or derives on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def fedmer_cache_root() -> Path:
    """``$FEDMER_CACHE`` if set, else ``~/.cache/fedmer``.

    Everything under it stays on this machine: synthetic cohorts and feature
    caches are device-local by design.
    """
    return Path(os.environ.get("FEDMER_CACHE") or Path.home() / ".cache" / "fedmer")
