"""Run the repository as a Flower App with ``flwr run .``, offline, and clean up.

``flwr run`` against the ``:local:`` address starts a detached local
SuperLink in simulation mode and leaves it running. This wrapper gives the run
a private ``FLWR_HOME`` (so nothing touches the user's Flower config), turns
off the update check and runtime dependency installation (no network), and
stops that SuperLink by its PID afterwards, even when the run fails.

Usage: ``python -m simulations.flwr_local [--supernodes N] [KEY=VALUE ...]``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def offline_flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower CLIs that never reaches the network."""
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        # `flwr` starts `flower-superlink` by name: use this interpreter's copy.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


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


def local_superlink_pids(flwr_home: Path) -> list[int]:
    """PIDs of SuperLinks started for this FLWR_HOME (their log file lives under it)."""
    marker = str(flwr_home / "local-superlink")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "flower-superlink" in cmdline and marker in cmdline:
            pids.append(int(proc.name))
    return pids


def stop_local_superlink(flwr_home: Path, grace: float = 10.0) -> None:
    """SIGTERM each local SuperLink of this FLWR_HOME, then SIGKILL stragglers."""
    pids = local_superlink_pids(flwr_home)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        time.sleep(0.2)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


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
        cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(REPO_ROOT), "--stream"]
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernodes", type=int, default=16)
    parser.add_argument("overrides", nargs="*", help="run-config overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    result = flwr_run(args.overrides, args.supernodes)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
