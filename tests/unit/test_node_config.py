"""The node-config schema: a device's own keys, validated with errors that name the key."""

from __future__ import annotations

import pytest

from client.local_data import device_node_config
from common.node_config import (
    NodeConfig,
    NodeConfigError,
    read_node_config,
    simulated_node_config_path,
    write_node_config,
)


def test_a_deployed_node_config_parses():
    node = NodeConfig.from_flower(
        {
            "data-dir": "/data",
            "role": "heldout",
            "epsilon-budget": "4",
            "allow-non-private": "false",
        }
    )
    assert node.role == "heldout" and node.epsilon_budget == 4.0 and not node.allow_non_private
    assert str(node.manifest_path) == "/data/manifest.csv"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data-dir": "/d", "datadir": "/d"}, "'datadir' is not known"),
        ({"data-dir": "/d", "role": "attacker"}, "role='attacker' must be one of"),
        (
            {"data-dir": "/d", "epsilon-budget": "lots"},
            "epsilon-budget='lots' is not a valid float",
        ),
        ({"data-dir": "/d", "epsilon-budget": -1}, "epsilon-budget=-1.0 must be >= 0"),
        ({"role": "train"}, "must name 'data-dir' or 'manifest'"),
        ({"data-dir": "/d", "allow-non-private": "maybe"}, "allow-non-private='maybe'"),
    ],
)
def test_bad_node_configs_name_the_key(raw, message):
    with pytest.raises(NodeConfigError, match=message):
        NodeConfig.from_flower(raw)


def test_a_simulated_device_reads_only_its_materialized_node_config(tmp_path):
    node = NodeConfig(data_dir=str(tmp_path / "p3"), role="heldout", device_id="sim-003")
    write_node_config(simulated_node_config_path(tmp_path, 3), node)
    assert read_node_config(simulated_node_config_path(tmp_path, 3)) == node
    # Flower's Simulation Runtime gives only the partition id.
    assert device_node_config({"partition-id": 3, "num-partitions": 4}, str(tmp_path)) == node
    with pytest.raises(NodeConfigError, match="no node config was materialized"):
        device_node_config({"partition-id": 5, "num-partitions": 6}, str(tmp_path))
    with pytest.raises(ValueError, match="names no simulation-dir"):
        device_node_config({"partition-id": 3}, "")
