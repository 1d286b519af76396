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
