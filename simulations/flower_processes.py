"""Flower's own processes, started offline and stopped by PID: shared by every harness.

``flwr run`` against ``:local:`` (``simulations/flwr_local.py``) and the
loopback deployment (``simulations/deployment.py``) both start Flower CLIs
that must never reach the network and must all be stopped afterwards,
including the processes Flower spawns below them (SuperExec, App processes)
and ones that outlive their parent. Each harness marks its processes with an
environment tag and stops them by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

BIN = Path(sys.executable).parent
TAG_VARIABLE = "FEDMER_DEPLOYMENT"


SUPEREXEC_POLL_SECONDS = "0.1"


def offline_flower_env(flwr_home: Path, tag: str = "") -> dict[str, str]:
    """Environment for Flower CLIs that never reaches the network.

    ``tag`` is inherited by every process Flower spawns below ours, including
    ones that outlive their parent (a SuperNode that exits leaves its
    SuperExec behind): :func:`tagged_pids` finds those by it.
    """
    env = dict(os.environ)
    if tag:
        env[TAG_VARIABLE] = tag
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        # Without it every Flower process waits up to 4 s for telemetry at exit.
        FLWR_TELEMETRY_ENABLED="0",
        # The SuperExec polls for new tasks (a ServerApp or ClientApp to start)
        # every second by default: up to 1 s of idle wait per message stage.
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL=SUPEREXEC_POLL_SECONDS,
        # `flwr` starts `flower-superlink` by name: use this interpreter's copy.
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def descendants(pid: int) -> list[int]:
    """PIDs of all living descendants of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(proc.name))
    found, frontier = [], [pid]
    while frontier:
        nxt = []
        for p in frontier:
            for c in children.get(p, []):
                found.append(c)
                nxt.append(c)
        frontier = nxt
    return found


def tagged_pids(tag: str) -> list[int]:
    """PIDs of living processes whose environment carries ``FEDMER_DEPLOYMENT=tag``."""
    needle = f"{TAG_VARIABLE}={tag}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if needle in environ and is_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a living (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_process_tree(proc: subprocess.Popen, grace: float = 8.0) -> None:
    """SIGTERM a process we started and everything under it, then SIGKILL stragglers.

    Flower's SuperExec runs in a session of its own, so the tree is collected
    by PID from /proc before the root is signalled; process groups are
    signalled too, so grandchildren that are re-parented in the meantime go
    as well.
    """
    pids = [proc.pid, *descendants(proc.pid)]
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        if proc.poll() is None:
            time.sleep(0.1)
        else:
            time.sleep(0.1)
    for pid in pids:
        if is_alive(pid):
            _signal(pid, signal.SIGKILL)
    for group in groups:
        if group == os.getpgid(0):
            continue
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


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
    stop_pids(local_superlink_pids(flwr_home), grace)


def stop_pids(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if is_alive(p)]
        time.sleep(0.2)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def toml_value(value: object) -> str:
    """A scalar as TOML writes it: what Flower's run config and App manifest read."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: quotes and backslashes escaped


def format_run_config(values: Mapping[str, object]) -> str:
    """``flwr run --run-config`` syntax: space-separated ``key=value`` (TOML values)."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in values.items())
