from pathlib import Path

import pytest
import tomllib

from common.run_config import RunConfig

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_declares_exactly_the_run_config_defaults():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert declared == RunConfig().to_flower()


def test_pyproject_points_at_the_apps():
    components = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "components"
    ]
    assert components == {
        "serverapp": "server.server_app:app",
        "clientapp": "client.flower_app:app",
    }


def test_from_flower_round_trips_and_coerces():
    cfg = RunConfig(num_server_rounds=3, learning_rate=0.2, out_dir="x")
    assert RunConfig.from_flower(cfg.to_flower()) == cfg
    assert RunConfig.from_flower({"num-server-rounds": "5"}).num_server_rounds == 5


def test_bad_value_names_the_key():
    with pytest.raises(ValueError, match="local-epochs"):
        RunConfig.from_flower({"local-epochs": "two"})


def test_every_key_declares_its_side_and_help():
    from common.run_config import SIDES, run_config_keys

    keys = run_config_keys()
    assert {k.name for k in keys} == set(RunConfig().to_flower())
    for key in keys:
        assert key.side in SIDES and len(key.help) > 10, key.name


def test_cli_flags_are_generated_with_the_run_configs_own_names():
    from common.run_config import run_config_keys
    from fedmer.cli import build_parser
    from fedmer.simulate_command import HARNESS_KEYS

    parser = build_parser()
    simulate = parser._subparsers._group_actions[0].choices["simulate"]  # noqa: SLF001
    flags = {s for a in simulate._actions for s in a.option_strings}  # noqa: SLF001
    for key in run_config_keys():
        assert (f"--{key.name}" in flags) == (key.name not in HARNESS_KEYS), key.name
    args = parser.parse_args(
        [
            "simulate",
            "--num-server-rounds",
            "3",
            "--no-dp-sgd",
            "--secagg",
            "--learning-rate",
            "0.1",
        ]
    )
    from fedmer.run_config_flags import run_config_from_args

    cfg = run_config_from_args(args)
    assert (cfg.num_server_rounds, cfg.dp_sgd, cfg.secagg, cfg.learning_rate) == (
        3,
        False,
        True,
        0.1,
    )
    assert cfg.local_epochs == RunConfig().local_epochs


def test_no_run_config_key_can_make_a_device_misbehave():
    """Fault injection lives with the harnesses; the production ClientApp has no fault mods."""
    from client.client_app import app

    names = {f.name for f in __import__("dataclasses").fields(RunConfig)}
    assert not {n for n in names if "poison" in n or "inject" in n or "dropout" in n}
    mods = [getattr(m, "__name__", type(m).__name__) for m in app._mods]  # noqa: SLF001
    assert mods == ["secagg_when_requested_mod", "payload_guard_mod"]
