from pathlib import Path

import pytest
import tomllib

from common.run_config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_exactly_the_run_config_defaults():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert declared == RunConfig().to_flower()


def test_pyproject_points_at_the_apps():
    components = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "components"
    ]
    assert components == {
        "serverapp": "server.server_app:app",
        "clientapp": "client.client_app:app",
    }


def test_from_flower_round_trips_and_coerces():
    cfg = RunConfig(num_server_rounds=3, learning_rate=0.2, out_dir="x")
    assert RunConfig.from_flower(cfg.to_flower()) == cfg
    assert RunConfig.from_flower({"num-server-rounds": "5"}).num_server_rounds == 5


def test_bad_value_names_the_key():
    with pytest.raises(ValueError, match="local-epochs"):
        RunConfig.from_flower({"local-epochs": "two"})
