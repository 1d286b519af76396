"""A small in-process federation for fault tests: 4 one-subject devices, 1 held out (tests only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from client.local_data import TRAIN, load_local_data
from common.node_config import NodeConfig
from common.run_config import RunConfig
from simulations.default_cohort import ensure_cohort
from simulations.device_folders import SimulatedDevice
from simulations.federation import prepare_federation
from simulations.synthetic import CohortSpec
from tests.scenarios import CLIP_LEVEL

SUBJECTS = 4


@dataclass
class SmallFederation:
    cfg: RunConfig
    devices: list[SimulatedDevice]
    out: Path
    nodes: dict[str, NodeConfig]  # by device id

    @property
    def first_trainer(self) -> str:
        return sorted(i for i, n in self.nodes.items() if n.role == TRAIN)[0]

    @property
    def trainers(self) -> list[str]:
        return sorted(i for i, n in self.nodes.items() if n.role == TRAIN)


def small_federation(
    tmp_path_factory: pytest.TempPathFactory, mp: pytest.MonkeyPatch, name: str, rounds: int
) -> SmallFederation:
    """Devices materialized (clip-level DP-SGD, random start), nothing run yet."""
    mp.setenv("FEDMER_CACHE", str(tmp_path_factory.getbasetemp() / "fedmer-cache"))
    manifest = ensure_cohort(CohortSpec(num_subjects=SUBJECTS, clips_per_class=3, seed=0))
    out = tmp_path_factory.mktemp(name)
    cfg = RunConfig(
        **CLIP_LEVEL,
        num_server_rounds=rounds,
        local_epochs=1,
        batch_size=4,
        num_heldout_subjects=1,
        cohort_subjects=SUBJECTS,
        cohort_clips_per_class=3,
        data_manifest=str(manifest),
        out_dir=str(out),
    )
    cfg, devices = prepare_federation(cfg, manifest, out)
    nodes = {load_local_data(d.node_config, cfg.model).device_id: d.node_config for d in devices}
    return SmallFederation(cfg, devices, out, nodes)
