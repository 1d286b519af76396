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


def signing_key_path(env: str, filename: str) -> Path:
    """``$<env>`` if set, else ``$XDG_CONFIG_HOME/fedmer/<filename>`` (``~/.config``):
    where a party's signing key lives on this machine, outside every run folder."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "fedmer" / filename
