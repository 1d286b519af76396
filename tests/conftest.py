"""Shared test set-up: offline Flower, and the ``integration`` marker by folder.

``tests/unit/`` holds fast tests of one module each (``make test-fast``);
``tests/integration/`` runs real processes: Flower's Simulation Runtime (Ray),
``flwr run .``, SuperLink and SuperNode processes, whole federations over the
in-process transport, the CLI end to end. ``make test`` runs both (CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    # Nothing a test starts may reach the network or wait on telemetry.
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
