"""Run one federation of simulated devices over a chosen transport.

The harness entry point used by ``fedmer simulate``, ``fedmer evaluate``,
``fedmer compare`` and the experiments: it materializes the devices' folders
and node configs (:mod:`simulations.device_folders`), then runs the one
ServerApp loop with the ClientApp over

* ``in-process``: :mod:`simulations.in_process` (protocol sweeps, tests);
* ``simulation``: Flower's Simulation Runtime on Ray
  (:mod:`simulations.flower_runtime`; several machines through ``RAY_ADDRESS``).

The Deployment Runtime runs the same two apps through ``flwr run`` against a
SuperLink (see ``docs/deployment.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.clientapp.typing import Mod

from common.run_config import RunConfig
from server.operator_registry import REGISTRY_FILE
from simulations.device_folders import (
    DEFAULT_EPSILON_BUDGET,
    Assignment,
    SimulatedDevice,
    heldout_assignment,
    materialize_devices,
)
from simulations.public_pretraining import with_public_start

TRANSPORTS = ("in-process", "simulation")


def prepare_federation(
    cfg: RunConfig,
    manifest: Path,
    out_dir: Path,
    assignment: Sequence[Assignment] | None = None,
    policy: Mapping[str, Any] | None = None,
) -> tuple[RunConfig, list[SimulatedDevice]]:
    """Write the devices' folders under ``out_dir/devices`` and, as their operator, the
    signed key registry of their public keys (``out_dir/registry.json``); returns the
    run config that points at them.

    ``assignment`` is (subjects, role) per device; by default one device per
    subject (or, with ``silos``, one per lab) with ``num-heldout-subjects`` of
    them held out, drawn by seed.
    Each training device's ε budget is the run's ``epsilon-budget``, else its
    ``target-epsilon``, else :data:`DEFAULT_EPSILON_BUDGET`; each held-out
    device's is the run's ``evaluation-epsilon``; ``policy``
    sets other NodeConfig fields of every device (for example
    ``allow_non_private`` for a non-private baseline).
    """
    out_dir = Path(out_dir).resolve()
    cfg = with_public_start(cfg)
    if assignment is None:
        assignment = heldout_assignment(
            manifest,
            cfg.num_heldout_subjects,
            cfg.seed,
            cfg.silos,
            cfg.partition,
            cfg.dirichlet_alpha,
        )
    devices = materialize_devices(
        manifest,
        assignment,
        out_dir / "devices",
        cache_dir=cfg.cache_dir,
        epsilon_budget=cfg.epsilon_budget or cfg.target_epsilon or DEFAULT_EPSILON_BUDGET,
        heldout_epsilon_budget=cfg.evaluation_epsilon or DEFAULT_EPSILON_BUDGET,
        policy=policy,
        registry=out_dir / REGISTRY_FILE,
    )
    cfg = cfg.replace(
        data_manifest=str(Path(manifest).resolve()),
        out_dir=str(out_dir),
        simulation_dir=str(out_dir / "devices"),
        min_nodes=len(devices),
    )
    return cfg, devices


def run_federation(
    cfg: RunConfig,
    devices: Sequence[SimulatedDevice],
    transport: str = "simulation",
    extra_mods: Sequence[Mod] = (),
    verbose: bool = False,
    workers: int = 1,
) -> Path:
    """Run the ServerApp over ``devices``; returns the run folder (``cfg.out_dir``).

    ``workers`` > 1 runs the in-process transport's devices in that many
    worker processes (Flower's Simulation Runtime sizes its own).
    """
    from client.client_app import app as production_client_app
    from client.client_app import build_client_app

    client_app = build_client_app(extra_mods) if extra_mods else production_client_app
    if transport == "in-process":
        from server.server_app import app as server_app
        from simulations.in_process import run_in_process

        # Every device is there from the start: nothing to wait for.
        cfg = cfg.replace(census_settle=0.0)
        run_in_process(
            server_app,
            client_app,
            cfg.to_flower(),
            [d.node_config for d in devices],
            workers=workers,
        )
    elif transport == "simulation":
        from simulations.flower_runtime import run_flower_simulation

        run_flower_simulation(
            cfg, num_supernodes=len(devices), verbose=verbose, client_app=client_app
        )
    else:
        raise ValueError(f"transport {transport!r} must be one of {', '.join(TRANSPORTS)}")
    return Path(cfg.out_dir)
