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
