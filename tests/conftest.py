"""Shared test set-up: offline Flower, and the ``integration`` marker by folder.

``tests/unit/`` holds fast tests of one module each (``make test-fast``);
``tests/integration/`` runs real processes: Flower's Simulation Runtime (Ray),
``flwr run .``, SuperLink and SuperNode processes, whole federations over the
in-process transport, the CLI end to end. ``make test`` runs both (CI).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    # Nothing a test starts may reach the network or wait on telemetry.
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    # The coordinator's and the operator's signing keys live outside run folders,
    # by default in ~/.config/fedmer; tests keep theirs in a folder of their own,
    # which every process they start inherits.
    keys = Path(tempfile.mkdtemp(prefix="fedmer-test-keys-"))
    os.environ.setdefault("FEDMER_COORDINATOR_KEY", str(keys / "coordinator_ed25519.pem"))
    os.environ.setdefault("FEDMER_OPERATOR_KEY", str(keys / "operator_ed25519.pem"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
