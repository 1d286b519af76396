"""Every benchmark still imports against today's code (benchmarks themselves run by hand)."""

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(
    m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
)


@pytest.mark.parametrize("name", MODULES)
def test_the_benchmark_imports_and_has_a_main(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)


def test_there_are_benchmarks():
    assert len(MODULES) >= 5


def test_the_default_run_bench_compares_rounds_10_to_12_with_rounds_2_to_4():
    from bench.bench_default_run import late_over_early

    seconds = [9.0, 1.0, 2.0, 1.5] + [1.0] * 5 + [3.0, 1.0, 1.0]
    assert late_over_early(seconds) == 1.5  # round 1 (σ calibration) is left out
    with pytest.raises(ValueError, match="at least 12 rounds, got 11"):
        late_over_early(seconds[:11])
