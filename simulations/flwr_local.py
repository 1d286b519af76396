"""Run the repository as a Flower App with ``flwr run .``, offline, and clean up.

``flwr run`` against the ``:local:`` address starts a detached local
SuperLink in simulation mode and leaves it running. This wrapper gives the run
a private ``FLWR_HOME`` (so nothing touches the user's Flower config), turns
off the update check and runtime dependency installation (no network), and
stops that SuperLink by its PID afterwards, even when the run fails.

Before that it materializes each simulated device's data folder and node
config (``simulations/device_folders.py``) and passes ``simulation-dir``, so
each of the Simulation Runtime's devices reads only its own folder.

Usage: ``python -m simulations.flwr_local [KEY=VALUE ...]`` (run-config overrides)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import tomllib

from simulations.flower_processes import (
    BIN,
    offline_flower_env,
    stop_local_superlink,
    toml_value,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_local_connection(flwr_home: Path, num_supernodes: int) -> None:
    """A Flower config whose default connection is a local simulation."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        "[superlink]\n"
        'default = "local"\n\n'
        "[superlink.local]\n"
        'address = ":local:"\n'
        f"options.num-supernodes = {num_supernodes}\n"
        "options.backend.client-resources.num-cpus = 1\n"
    )


def flwr_run(
    run_config: Sequence[str],
    num_supernodes: int,
    timeout: float | None = None,
    flwr_home: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``flwr run <repo> --run-config ... --stream`` in a private FLWR_HOME."""
    with tempfile.TemporaryDirectory(prefix="fedmer-flwr-home-") as home:
        flwr_home = flwr_home or Path(home)
        write_local_connection(flwr_home, num_supernodes)
        cmd = [str(BIN / "flwr"), "run", str(REPO_ROOT), "--stream"]
        if run_config:
            cmd += ["--run-config", " ".join(run_config)]
        try:
            return subprocess.run(
                cmd,
                env=offline_flower_env(flwr_home),
                text=True,
                capture_output=True,
                timeout=timeout,
            )
        finally:
            stop_local_superlink(flwr_home)


def parse_overrides(overrides: Sequence[str]) -> dict[str, object]:
    """``key=value`` pairs as ``flwr run --run-config`` reads them (TOML values)."""
    values: dict[str, object] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"run-config override {item!r} is not KEY=VALUE")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw
    return values


def materialized_flwr_run(
    overrides: Sequence[str], timeout: float | None = None, flwr_home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Materialize the devices for the run config ``overrides`` describe, then ``flwr run .``."""
    from common.run_config import RunConfig
    from simulations.default_cohort import cohort_manifest
    from simulations.federation import prepare_federation

    values = parse_overrides(overrides)
    cfg = RunConfig.from_flower(values)
    out_dir = Path(cfg.out_dir or Path("runs") / time.strftime("flwr-%Y%m%d-%H%M%S"))
    cfg, devices = prepare_federation(cfg, cohort_manifest(cfg, progress=True), out_dir)
    derived = {
        "out-dir": cfg.out_dir,
        "simulation-dir": cfg.simulation_dir,
        "data-manifest": cfg.data_manifest,
        "min-nodes": cfg.min_nodes,
    }
    # Each key once: flwr refuses a run config that names a key twice.
    pairs = [f"{k}={toml_value(v)}" for k, v in {**values, **derived}.items()]
    return flwr_run(pairs, len(devices), timeout=timeout, flwr_home=flwr_home)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="run-config overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    result = materialized_flwr_run(args.overrides)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
