"""The built-in synthetic cohort, generated once per machine and spec.

Several simulated devices may ask for it at the same moment (one Ray worker
each), so generation is serialized with an exclusive file lock; whoever gets
the lock second finds the cohort complete and returns at once.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from common.paths import fedmer_cache_root
from common.run_config import RunConfig
from simulations.synthetic import CohortSpec, generate_cohort


def default_cohort_dir(spec: CohortSpec) -> Path:
    """Folder of the cohort for ``spec`` under the fedmer cache."""
    name = f"synthetic-seed{spec.seed}-s{spec.num_subjects}-c{spec.clips_per_class}"
    return fedmer_cache_root() / "cohorts" / name


def ensure_cohort(
    spec: CohortSpec, out_dir: Path | None = None, workers: int = 1, progress: bool = False
) -> Path:
    """Generate the cohort unless it already exists; returns the manifest path."""
    out_dir = out_dir or default_cohort_dir(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return generate_cohort(out_dir, spec, workers=workers, progress=progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cohort_manifest(cfg: RunConfig, workers: int = 1, progress: bool = False) -> Path:
    """The run's manifest: ``data-manifest``, or the synthetic cohort the run config describes."""
    if cfg.data_manifest:
        return Path(cfg.data_manifest).resolve()
    spec = CohortSpec(
        num_subjects=cfg.cohort_subjects, clips_per_class=cfg.cohort_clips_per_class, seed=cfg.seed
    )
    if progress:
        print(
            f"[fedmer] synthetic cohort: {spec.num_subjects} subjects, "
            f"{3 * spec.clips_per_class} clips each (seed {spec.seed})",
            flush=True,
        )
    return ensure_cohort(spec, workers=workers, progress=progress)
