"""Device data directories for real-process tests: one synthetic subject each, pre-warmed."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simulations.synthetic import CohortSpec, generate_cohort


def warm(data_dir: Path, role: str):
    """Preprocess once, so the feature cache in the device's data dir is hot."""
    from client.local_data import load_local_data
    from common.node_config import NodeConfig

    node = NodeConfig(data_dir=str(data_dir), role=role, cache_dir=str(data_dir / ".fedmer-cache"))
    return load_local_data(node, "ststnet")


def make_device_data(d: Path, seed: int, role: str, clips_per_class: int) -> None:
    generate_cohort(d, CohortSpec(num_subjects=1, clips_per_class=clips_per_class, seed=seed))
    warm(d, role)


def device_dirs(root: Path, roles: list[str], clips_per_class: int, seed: int) -> list[Path]:
    """One data directory per role (``device-001``...), made two at a time."""
    dirs = [root / f"device-{i + 1:03d}" for i in range(len(roles))]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        list(
            pool.map(
                make_device_data,
                dirs,
                [seed + i for i in range(len(roles))],
                roles,
                [clips_per_class] * len(roles),
            )
        )
    return dirs
