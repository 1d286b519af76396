"""The synthetic cohort for a test module, generated once under the test session's cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulations.default_cohort import ensure_cohort
from simulations.synthetic import CohortSpec


def cohort_in_test_cache(
    tmp_path_factory: pytest.TempPathFactory, spec: CohortSpec
) -> Iterator[Path]:
    """Yield the manifest of ``spec``'s cohort, with ``FEDMER_CACHE`` in the session's temp dir
    while the module's tests run (for ``yield from`` in a module-scoped fixture)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDMER_CACHE", str(tmp_path_factory.getbasetemp() / "fedmer-cache"))
    try:
        yield ensure_cohort(spec)
    finally:
        mp.undo()


# The cohort of the handler-level tests: six subjects, one of them held out.
SMALL_COHORT = CohortSpec(num_subjects=6, clips_per_class=3, seed=0)


def small_clip_level_federation(manifest: Path, out: Path, **overrides: object):
    """Devices of :data:`SMALL_COHORT` under clip-level DP-SGD (its RunConfig, its devices)."""
    from common.run_config import RunConfig
    from simulations.federation import prepare_federation
    from tests.scenarios import CLIP_LEVEL

    settings = {
        **CLIP_LEVEL,
        "num_server_rounds": 1,
        "cohort_subjects": SMALL_COHORT.num_subjects,
        "cohort_clips_per_class": SMALL_COHORT.clips_per_class,
        "num_heldout_subjects": 1,
        **overrides,
    }
    cfg = RunConfig(**settings, data_manifest=str(manifest))  # type: ignore[arg-type]
    return prepare_federation(cfg, manifest, out)
