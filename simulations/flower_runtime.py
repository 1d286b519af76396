"""Run fedmer's own ServerApp and ClientApp on Flower's Simulation Runtime.

This is the one seam where fedmer touches a private Flower function. The
public ``flwr.simulation.run_simulation`` cannot pass a run config to the
apps, and ``fedmer simulate`` must run the very same apps that ``flwr run .``
runs, with the user's settings. So, like Flower's own ``flwr-simulation``
process, this writes a minimal Flower App folder whose ``pyproject.toml``
declares the run config, and starts ``_run_simulation`` with a Run and a
ServerApp context built from it.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.supercore.run import Run

from common.run_config import RunConfig
from simulations.flower_processes import toml_value
from simulations.in_process import coordinator_context


def run_flower_simulation(
    cfg: RunConfig,
    num_supernodes: int,
    cpus_per_client: float = 1.0,
    verbose: bool = False,
    client_app: ClientApp | None = None,
) -> None:
    """Run the fedmer apps for ``cfg`` on ``num_supernodes`` simulated devices.

    Each device gets only ``partition-id`` from Flower and reads the node
    config materialized for it under ``cfg.simulation_dir``. ``client_app``
    replaces the production ClientApp (experiments attach fault mods).
    """
    # Imported here: importing Flower's simulation module pulls in Ray.
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.telemetry import EventType

    from client.client_app import app as production_client_app
    from server.server_app import app as server_app

    client_app = client_app or production_client_app
    run_config = cfg.to_flower()
    with tempfile.TemporaryDirectory(prefix="fedmer-app-") as app_dir:
        _write_app_manifest(Path(app_dir), run_config)
        run = Run.create_empty(run_id=secrets.randbits(63))
        run.primary_task_id = secrets.randbits(63)
        run.federation_id = NOOP_FEDERATION_ID
        context = coordinator_context(run.run_id, run_config)
        _run_simulation(
            num_supernodes=num_supernodes,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app,
            server_app=server_app,
            backend_name="ray",
            backend_config={
                "client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0},
                "init_args": {"include_dashboard": False},
            },
            app_dir=app_dir,
            run=run,
            server_app_context=context,
            verbose_logging=verbose,
            # Makes the simulated devices read their run config from app_dir;
            # the app objects passed above are still the ones that run.
            is_app=True,
        )


def _write_app_manifest(app_dir: Path, run_config: dict[str, object]) -> None:
    # Flower validates the whole App manifest, so the generated one names the
    # same components as the repository's pyproject.toml.
    lines = [
        "[project]",
        'name = "fedmer-simulation"',
        'version = "0.0.0"',
        "[tool.flwr.app]",
        'publisher = "fedmer"',
        "[tool.flwr.app.components]",
        'serverapp = "server.server_app:app"',
        'clientapp = "client.flower_app:app"',
        "[tool.flwr.app.config]",
    ]
    for key, value in run_config.items():
        lines.append(f"{key} = {toml_value(value)}")
    (app_dir / "pyproject.toml").write_text("\n".join(lines) + "\n")
