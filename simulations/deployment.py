"""A real Flower deployment on one machine: SuperLink, SuperNodes, ``flwr run .``.

Starts a real ``flower-superlink`` with TLS and ``--enable-supernode-auth`` and
real ``flower-supernode`` processes on 127.0.0.1 (free ports), registers the
SuperNodes' public keys with ``flwr supernode register``, runs ``flwr run .``
against it, and stops every process it started by its PID (and the PIDs of
their children: the SuperExec and App processes Flower spawns), even when the
caller fails. Everything runs offline: runtime dependency installation and
update checks are off, and each process has a private ``FLWR_HOME``.

The SuperLink keeps its state (registered SuperNode keys and node ids, runs,
messages) in a SQLite file in the work dir (``superlink-state/superlink.db``),
so a SuperLink restarted on the same port with the same file is the same
coordinator: the SuperNodes, which retry with backoff without limit unless
told otherwise, reconnect under their registered node ids without being
restarted or registered again (``docs/deployment.md``, "Coordinator restart").

Used by ``tests/integration/test_deployment.py`` and ``bench/bench_round_time.py``; the
same steps by hand are in ``docs/deployment.md``::

    with LocalDeployment(workdir) as dep:
        dep.start_superlink()
        node = dep.start_supernode(dep.add_device("device-001", data_dir))
        result = dep.flwr_run({"num-server-rounds": 2, "min-nodes": 1})
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from client.enrolment import enrol
from client.worker_link import NODE_CONFIG_KEY as DEVICE_WORKER_KEY
from client.worker_link import key_path
from common.credentials import (
    CertificatePaths,
    DeviceKeyPaths,
    create_certificates,
    create_device_keys,
)
from common.privacy.key_registry import Enrolment
from server.operator_registry import REGISTRY_FILE, write_registry
from simulations.flower_processes import (
    BIN,
    descendants,
    format_run_config,
    offline_flower_env,
    stop_pids,
    stop_process_tree,
    tagged_pids,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
CONNECTION = "fedmer-deployment"
DEFAULT_DEVICE_BUDGET = 8.0
# flower-superlink --database: a SQLite file keeps the state across restarts;
# this name (flwr's own) keeps it in memory, lost when the SuperLink stops.
IN_MEMORY_DATABASE = ":flwr-in-memory:"
# A SuperNode the SuperLink refuses to activate exits within a few seconds;
# one still running after this long is connected. A supervisor waits
# RESTART_DELAY before starting it again.
SUPERNODE_SETTLE = 10.0
RESTART_DELAY = 10.0
# A device worker's socket, in the device's state dir; its key file appears
# when it is ready to serve.
WORKER_SOCKET = "worker.sock"
WORKER_START_TIMEOUT = 120.0


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def format_node_config(values: Mapping[str, object]) -> str:
    """``--node-config`` syntax: space-separated ``key=value``, strings quoted."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            parts.append(f"{key}={value}")
        else:
            text = str(value)
            if '"' in text or " " in text:
                raise ValueError(f"node config {key}={text!r}: no spaces or quotes allowed")
            parts.append(f'{key}="{text}"')
    return " ".join(parts)


@dataclass
class Device:
    """One SuperNode's identity and node config."""

    device_id: str
    keys: DeviceKeyPaths
    node_config: dict[str, object]


@dataclass
class RunningProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class LocalDeployment:
    """SuperLink + SuperNodes on loopback, with TLS and node authentication."""

    def __init__(
        self,
        workdir: Path,
        sans: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
        device_workers: bool = False,
    ):
        """``device_workers``: every SuperNode gets a warm ``fedmer device-worker``
        (started with it, left running when it is stopped or killed)."""
        self.workdir = Path(workdir)
        self.device_workers = device_workers
        self.workers: dict[str, RunningProcess] = {}
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        cert_dir = self.workdir / "certificates"
        if (cert_dir / "ca.pem").exists():
            from common.credentials import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY

            self.certs = CertificatePaths(
                cert_dir / CA_CERT, cert_dir / CA_KEY, cert_dir / SERVER_CERT, cert_dir / SERVER_KEY
            )
        else:
            self.certs = create_certificates(cert_dir, sans)
        self.cli_home = self.workdir / "flwr-cli-home"
        self.superlink: RunningProcess | None = None
        self.superlink_port: int | None = None
        # The SuperLink's state; every start_superlink() of this deployment reuses it.
        self.superlink_database: Path | str = self.workdir / "superlink-state" / "superlink.db"
        self.processes: list[RunningProcess] = []
        self.devices: dict[str, Device] = {}
        self.enrolments: dict[str, Enrolment] = {}
        self.registry_path = self.workdir / REGISTRY_FILE  # the operator's, signed
        self.tag = uuid.uuid4().hex

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process this deployment started, newest first."""
        for running in reversed(self.processes):
            stop_process_tree(running.proc)
        self.processes.clear()
        self.stop_orphans()

    def stop_orphans(self, grace: float = 5.0) -> list[int]:
        """Stop, by PID, processes started under this deployment that lost their parent."""
        pids = tagged_pids(self.tag)
        stop_pids(list(pids), grace)
        return pids

    def stop(self, running: RunningProcess, sig: int = signal.SIGTERM) -> None:
        """Stop one process (and its children); SIGKILL for a hard crash."""
        if sig == signal.SIGKILL:
            stop_pids([running.pid, *descendants(running.pid)], grace=0.0)
            running.wait_exit(10)
        stop_process_tree(running.proc)
        if running in self.processes:
            self.processes.remove(running)

    def _spawn(self, name: str, cmd: list[str], flwr_home: Path) -> RunningProcess:
        flwr_home.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        handle = open(log_path, "ab")
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=offline_flower_env(flwr_home, self.tag),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            handle.close()
        running = RunningProcess(name, proc, log_path)
        self.processes.append(running)
        return running

    # -- SuperLink ---------------------------------------------------------
    def start_superlink(
        self,
        port: int | None = None,
        enable_auth: bool = True,
        database: Path | str | None = None,
        timeout: float = 60.0,
    ) -> RunningProcess:
        """``flower-superlink`` with TLS (+ node auth) on 127.0.0.1; waits until it serves.

        Its state lives in ``database`` (by default, and on every later start, the
        deployment's ``superlink_database`` file; :data:`IN_MEMORY_DATABASE` for none).
        Started again on the same port with the same file after a crash, it still
        knows every registered key and node id, and the running SuperNodes reconnect.
        """
        self.superlink_port = port or self.superlink_port or free_port()
        if database is not None:
            self.superlink_database = database
        if isinstance(self.superlink_database, Path):
            self.superlink_database.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "flower-superlink"),
            "--ssl-ca-certfile",
            str(self.certs.ca_cert),
            "--ssl-certfile",
            str(self.certs.server_cert),
            "--ssl-keyfile",
            str(self.certs.server_key),
            "--host",
            LOOPBACK,
            "--port",
            str(self.superlink_port),
            "--disable-runtime-dependency-installation",
        ]
        if enable_auth:
            cmd.append("--enable-supernode-auth")
        cmd += ["--database", str(self.superlink_database)]
        self.superlink = self._spawn("superlink", cmd, self.workdir / "superlink-home")
        self._wait_tls(self.superlink, timeout)
        self._write_cli_connection()
        return self.superlink

    def crash_superlink(self) -> list[int]:
        """SIGKILL the SuperLink and everything under it (SuperExec, ServerApp): a crash.

        Returns the PIDs it killed. The database file stays as the crash left it;
        :meth:`start_superlink` (same port by default) starts the SuperLink on it again.
        """
        assert self.superlink is not None, "start the SuperLink first"
        tree = [self.superlink.pid, *descendants(self.superlink.pid)]
        self.stop(self.superlink, signal.SIGKILL)
        return tree

    @property
    def address(self) -> str:
        assert self.superlink_port is not None, "start the SuperLink first"
        return f"{LOOPBACK}:{self.superlink_port}"

    def _wait_tls(self, running: RunningProcess, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running.proc.poll() is not None:
                raise RuntimeError(f"flower-superlink exited early:\n{running.log()[-3000:]}")
            try:
                with socket.create_connection((LOOPBACK, self.superlink_port), timeout=2) as sock:
                    with ctx.wrap_socket(sock, server_hostname=LOOPBACK):
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"SuperLink not serving TLS after {timeout}s:\n{running.log()[-3000:]}")

    def _write_cli_connection(self) -> None:
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text(
            "[superlink]\n"
            f'default = "{CONNECTION}"\n\n'
            f"[superlink.{CONNECTION}]\n"
            f'address = "{self.address}"\n'
            f'root-certificates = "{self.certs.ca_cert}"\n'
        )

    def flwr_cli(self, args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=REPO_ROOT,
            env=offline_flower_env(self.cli_home, self.tag),
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    # -- devices -----------------------------------------------------------
    def add_device(
        self,
        device_id: str,
        data_dir: Path | None = None,
        role: str = "train",
        register: bool = True,
        **node_config: object,
    ) -> Device:
        """Create the device's keys (once, in its state dir), enter its public keys in the
        operator's registry, register its auth key with the SuperLink, name its node config."""
        key_root = self.workdir / "device-keys"
        existing = key_root / device_id / "auth_key"
        if existing.exists():
            from common.credentials import device_key_paths

            keys = device_key_paths(key_root, device_id)
        else:
            [keys] = create_device_keys(key_root, [device_id])
        # The device's own keys, in its state dir; the operator registers the public halves.
        self.enrolments[device_id] = enrol(keys.auth_private_key.parent, device_id)
        write_registry(self.registry_path, self.enrolments.values())
        config: dict[str, object] = {
            "device-id": device_id,
            "role": role,
            "state-dir": str(keys.auth_private_key.parent),
            # The operator's budget for this device; a device with none refuses to train.
            "epsilon-budget": DEFAULT_DEVICE_BUDGET,
        }
        if data_dir is not None:
            config["data-dir"] = str(data_dir)
            config["cache-dir"] = str(Path(data_dir) / ".fedmer-cache")
        config.update(node_config)
        device = Device(device_id, keys, config)
        if register:
            self.register(device)
        self.devices[device_id] = device
        return device

    def register(self, device: Device) -> int:
        result = self.flwr_cli(
            [
                "supernode",
                "register",
                str(device.keys.auth_public_key),
                CONNECTION,
                "--format",
                "json",
            ]
        )
        out = result.stdout
        if result.returncode != 0 or '"success": true' not in out:
            raise RuntimeError(f"registering {device.device_id} failed:\n{out}\n{result.stderr}")
        node_id = int(json.loads(out[out.index("{") :])["node-id"])
        device.node_config.setdefault("_node-id", node_id)
        return node_id

    def start_supernode(
        self,
        device: Device,
        tls: bool = True,
        auth: bool = True,
        max_retries: int | None = None,
        max_wait_time: float | None = None,
        worker: bool | None = None,
    ) -> RunningProcess:
        """``flower-supernode`` for one device (own runtime port and FLWR_HOME), with
        its warm device worker when ``worker`` (by default, the deployment's
        ``device_workers``).

        Without ``max_retries``/``max_wait_time`` the SuperNode retries every
        call to the SuperLink without limit, with jittered exponential backoff
        (at most 20 s between tries, flwr's ``MAX_RETRY_DELAY``): it rides
        through a SuperLink restart. With them it gives up and exits.
        """
        if self.device_workers if worker is None else worker:
            self.start_device_worker(device)
        runtime_port = free_port()
        config = {k: v for k, v in device.node_config.items() if not k.startswith("_")}
        cmd = [
            str(BIN / "flower-supernode"),
            "--superlink",
            self.address,
            "--host",
            LOOPBACK,
            "--port",
            str(runtime_port),
            "--node-config",
            format_node_config(config),
        ]
        cmd += ["--root-certificates", str(self.certs.ca_cert)] if tls else ["--insecure"]
        if auth:
            cmd += ["--auth-supernode-private-key", str(device.keys.auth_private_key)]
        if max_retries is not None:
            cmd += ["--max-retries", str(max_retries)]
        if max_wait_time is not None:
            cmd += ["--max-wait-time", str(max_wait_time)]
        running = self._spawn(
            f"supernode-{device.device_id}", cmd, self.workdir / "homes" / device.device_id
        )
        running.extra["device"] = device
        return running

    def start_device_worker(self, device: Device) -> RunningProcess:
        """``fedmer device-worker`` for one device, unless one is running; its
        socket is in the device's state dir, and its node config names it."""
        running = self.workers.get(device.device_id)
        if running is not None and running.proc.poll() is None:
            return running
        socket_path = Path(str(device.node_config["state-dir"])) / WORKER_SOCKET
        key_path(socket_path).unlink(missing_ok=True)  # left by a worker that was killed
        cmd = [str(BIN / "fedmer"), "device-worker", "--socket", str(socket_path)]
        running = self._spawn(
            f"device-worker-{device.device_id}", cmd, self.workdir / "homes" / device.device_id
        )
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not key_path(socket_path).exists():
            if running.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"device worker of {device.device_id} did not start:\n{running.log()[-3000:]}"
                )
            time.sleep(0.1)
        device.node_config[DEVICE_WORKER_KEY] = str(socket_path)
        running.extra["device"] = device
        self.workers[device.device_id] = running
        return running

    def supervise_supernode(
        self, device: Device, timeout: float = 240.0, restart_delay: float = RESTART_DELAY
    ) -> RunningProcess:
        """Start a device's SuperNode as a service manager would (systemd
        ``Restart=on-failure``): again, ``restart_delay`` later, whenever it exits.

        A SuperNode restarted right after a crash is refused activation by the
        SuperLink (``[code: 2004] Failed to activate SuperNode``) until the
        SuperLink has declared its previous process gone (two missed heartbeats),
        and flwr 1.41 then exits (code 305) instead of retrying.
        """
        deadline = time.monotonic() + timeout
        while True:
            running = self.start_supernode(device)
            if running.wait_exit(SUPERNODE_SETTLE) is None:
                return running
            if time.monotonic() + restart_delay > deadline:
                raise TimeoutError(
                    f"SuperNode of {device.device_id} kept exiting for {timeout:.0f}s:\n"
                    f"{running.log()[-3000:]}"
                )
            time.sleep(restart_delay)

    def online_nodes(self) -> int:
        """Number of SuperNodes the SuperLink reports online."""
        result = self.flwr_cli(["supernode", "ls", CONNECTION, "--format", "json"])
        if result.returncode != 0:
            return 0
        out = result.stdout
        try:
            payload = json.loads(out[out.index("{") :])
        except ValueError:
            return 0
        return sum(1 for n in payload.get("nodes", []) if n.get("status") == "online")

    def wait_online(self, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.online_nodes() >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"fewer than {count} SuperNodes online after {timeout}s")

    # -- runs --------------------------------------------------------------
    def start_run(
        self, run_config: Mapping[str, object], name: str = "flwr-run", app: Path = REPO_ROOT
    ) -> RunningProcess:
        """``flwr run . <connection> --stream`` in the background (``app``: another Flower App)."""
        cmd = [
            str(BIN / "flwr"),
            "run",
            str(app),
            CONNECTION,
            "--stream",
            "--run-config",
            format_run_config(run_config),
        ]
        running = self._spawn(name, cmd, self.cli_home)
        return running

    def flwr_run(
        self, run_config: Mapping[str, object], timeout: float = 600.0, app: Path = REPO_ROOT
    ) -> tuple[int | None, str]:
        """Run ``flwr run .`` to completion; returns (exit code or None on timeout, log)."""
        running = self.start_run(run_config, app=app)
        code = running.wait_exit(timeout)
        if code is None:
            self.stop(running)
        return code, running.log()

    def audit(
        self, ledger_dir: Path, report_dir: Path, timeout: float = 600.0
    ) -> subprocess.CompletedProcess[str]:
        """``fedmer audit`` of a run's ledgers, as the privacy officer runs it: against
        this deployment's signed key registry, pinned by the operator's public key."""
        operator = json.loads(self.registry_path.read_text())["signed_by"]
        return subprocess.run(
            [sys.executable, "-m", "fedmer.cli", "audit", str(ledger_dir), "--registry",
             str(self.registry_path), "--operator-key", operator, "--report", str(report_dir)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def logs_text(self) -> str:
        """Every log, for a failing test's message."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)
