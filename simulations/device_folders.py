"""Materialize each simulated device's data folder and node config before launch.

A simulated device must behave as a deployed one: it reads only its own data
folder and learns its role from its own node config, never from the run
config. So before any transport starts, the harness writes, per device::

    <root>/partition-000/manifest.csv      the device's own clips only
    <root>/partition-000/prepare.json      the settings they were prepared with
    <root>/partition-000/node-config.json  data-dir, role, device-id, state-dir, ...
    <root>/partition-000/state/            the device's ledger and signing key

plus ``<root>/devices.json``, the harness's own index (device -> subject,
dataset, role), which no device reads. The in-process transport hands each
device its node config directly; a device on Flower's Simulation Runtime,
which gets only ``partition-id``, reads ``node-config.json`` of its partition.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from client.datasets.manifest import read_manifest, write_manifest
from client.enrolment import enrol
from client.prepare import PREPARE_REPORT
from common.node_config import (
    HELDOUT,
    TRAIN,
    NodeConfig,
    simulated_node_config_path,
    write_node_config,
)
from server.operator_registry import REGISTRY_FILE, write_registry
from simulations.partitions import assign_subjects, split_subjects

INDEX_FILE = "devices.json"
# The budget a simulated device holds when the run sets neither a target nor a budget.
DEFAULT_EPSILON_BUDGET = 8.0


@dataclass(frozen=True)
class SimulatedDevice:
    partition_id: int
    device_id: str
    subject: str
    dataset: str
    role: str
    node_config: NodeConfig
    subjects: tuple[str, ...] = ()  # every subject the device holds (one, or a lab's)


def device_id_for(partition_id: int) -> str:
    """The id every transport gives the simulated device of a partition."""
    return f"sim-{partition_id:03d}"


# What one simulated device holds: one subject, or (a lab) several, and its role.
Assignment = tuple[str | tuple[str, ...], str]


def heldout_assignment(
    manifest: Path,
    num_heldout: int,
    seed: int,
    silos: int = 0,
    partition: str = "round-robin",
    dirichlet_alpha: float = 0.5,
) -> list[Assignment]:
    """(subjects, role) per device: training devices first, then the seeded held-out draw.

    ``silos`` 0 is cross-device: one device per subject, held-out subjects too.
    ``silos`` N > 0 is cross-silo, the training subjects on lab devices by
    ``partition`` (:func:`simulations.partitions.assign_subjects`), and the
    held-out subjects on one held-out device, whose counts then carry one noise
    draw, not one per subject.
    """
    table = read_manifest(manifest)
    split = split_subjects({c.subject for c in table.clips}, num_heldout, seed)
    if silos <= 0 and partition != "lab":
        return [(s, TRAIN) for s in split.train] + [(s, HELDOUT) for s in split.heldout]
    train = set(split.train)
    rows = [(c.subject, c.dataset, c.label) for c in table.clips if c.subject in train]
    labs = assign_subjects(rows, partition, silos, dirichlet_alpha, seed)
    return [(lab, TRAIN) for lab in labs] + [(tuple(split.heldout), HELDOUT)]


def materialize_devices(
    manifest: Path,
    assignment: Sequence[Assignment],
    root: Path,
    *,
    cache_dir: str = "",
    epsilon_budget: float = DEFAULT_EPSILON_BUDGET,
    heldout_epsilon_budget: float = DEFAULT_EPSILON_BUDGET,
    policy: Mapping[str, Any] | None = None,
    registry: Path | None = None,
) -> list[SimulatedDevice]:
    """Write one folder per (subject, role) under ``root``; returns the devices in order.

    The harness plays each simulated device's operator: it sets the device's
    ε budget (training devices ``epsilon_budget``, held-out devices, which
    spend only on releasing evaluation counts, ``heldout_epsilon_budget``) and, through ``policy`` (NodeConfig fields such as
    ``allow_non_private``, ``seeded_sampling`` or ``min_noise_multiplier``),
    any other part of its privacy policy. As the operator it also signs the key
    registry of the devices' public keys (``registry``, default ``root/registry.json``).
    """
    manifest = Path(manifest)
    table = read_manifest(manifest)
    by_subject: dict[str, list] = {}
    for clip in table.clips:
        by_subject.setdefault(clip.subject, []).append(clip)
    prepared = manifest.parent / PREPARE_REPORT
    root = Path(root).resolve()
    devices = []
    enrolments = []
    for partition_id, (held, role) in enumerate(assignment):
        subjects = (held,) if isinstance(held, str) else tuple(held)
        clips = []
        for subject in subjects:
            if not by_subject.get(subject):
                raise ValueError(f"{manifest}: subject {subject!r} has no clips")
            clips.extend(by_subject[subject])
        folder = simulated_node_config_path(root, partition_id).parent
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder / "manifest.csv", clips)
        if prepared.exists():
            shutil.copyfile(prepared, folder / PREPARE_REPORT)
        node = NodeConfig(
            data_dir=str(folder),
            state_dir=str(folder / "state"),
            cache_dir=cache_dir,
            role=role,
            device_id=device_id_for(partition_id),
            epsilon_budget=heldout_epsilon_budget if role == HELDOUT else epsilon_budget,
            # The operator of a one-subject training device (a phone) declares it.
            single_person=role != HELDOUT and len(subjects) == 1,
        )
        node = dataclasses.replace(node, **dict(policy or {}))
        write_node_config(folder / "node-config.json", node)
        # The device creates its own ledger key in its own state dir; the harness,
        # as the operator, sees only the public half (its enrolment).
        enrolments.append(
            enrol(
                Path(node.state_dir),
                node.device_id,
                with_auth_key=False,
                single_person=node.single_person,
            )
        )
        name = subjects[0] if len(subjects) == 1 else f"lab-{partition_id:02d}"
        devices.append(
            SimulatedDevice(
                partition_id, node.device_id, name, clips[0].dataset, role, node, subjects
            )
        )
    index = [{**asdict(d), "node_config": d.node_config.to_flower()} for d in devices]
    (root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    write_registry(registry or root / REGISTRY_FILE, enrolments)
    return devices


def read_device_index(root: Path) -> list[dict[str, object]]:
    """The harness's index of the devices it materialized under ``root``."""
    return list(json.loads((Path(root) / INDEX_FILE).read_text()))
