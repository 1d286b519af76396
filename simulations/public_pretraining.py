"""Public pretraining: a starting model trained on synthetic subjects no device holds.

fedmer's synthetic generator is public, so a model trained on its output
costs no one's privacy. The pretraining cohort is drawn from a seed disjoint
from every cohort a run can generate (``PUBLIC_SEED_BASE`` + the run seed,
far above any run seed), so its subjects are different people from every
device's; the seeds are recorded in ``pretraining.json`` beside the weights,
which the ServerApp copies into ``results.json``. Training is plain SGD in the
harness (no device is involved) through the devices' own preprocessing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from client.local_data import load_local_data
from client.plain_training import LocalSchedule, train_plain
from common.atomic_io import write_json_atomic
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.node_config import TRAIN, NodeConfig
from common.paths import fedmer_cache_root
from common.run_config import RunConfig
from server.run_results import save_model
from server.starting_model import PRETRAINING_FILE
from simulations.default_cohort import ensure_cohort
from simulations.synthetic import CohortSpec

# Run seeds are small integers; the public cohort's seed is never one of them.
PUBLIC_SEED_BASE = 1_000_003
PRETRAIN_BATCH, PRETRAIN_LR = 16, 0.1


def public_spec(cfg: RunConfig) -> CohortSpec:
    return CohortSpec(
        num_subjects=cfg.pretrain_subjects,
        clips_per_class=cfg.cohort_clips_per_class,
        seed=PUBLIC_SEED_BASE + cfg.seed,
    )


def pretrained_model(cfg: RunConfig, workers: int = 1, progress: bool = False) -> Path:
    """The starting weights for ``cfg`` (cached per spec, model and epochs); their path."""
    spec = public_spec(cfg)
    folder = (
        fedmer_cache_root()
        / "pretrained"
        / f"{cfg.model}-seed{spec.seed}-s{spec.num_subjects}-c{spec.clips_per_class}"
        f"-e{cfg.pretrain_epochs}"
    )
    weights = folder / "model.pt"
    if weights.is_file() and (folder / PRETRAINING_FILE).is_file():
        return weights
    started = time.monotonic()
    manifest = ensure_cohort(spec, workers=workers, progress=progress)
    node = NodeConfig(manifest=str(manifest), role=TRAIN, device_id="public-pretraining")
    data = load_local_data(node, cfg.model)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    schedule = LocalSchedule(cfg.pretrain_epochs, PRETRAIN_BATCH, PRETRAIN_LR)
    train_plain(model, data.features, data.labels, schedule, seed=spec.seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model.state_dict(), folder, weights.name)
    record: dict[str, Any] = {
        "data": "public: fedmer's synthetic generator, not any device's subjects",
        "cohort_seed": spec.seed,
        "subjects": spec.num_subjects,
        "clips": len(data),
        "disjoint_from_run_seed": cfg.seed,
        "model": cfg.model,
        "epochs": cfg.pretrain_epochs,
        "batch_size": PRETRAIN_BATCH,
        "learning_rate": PRETRAIN_LR,
        "privacy": "none spent: public data",
        "seconds": round(time.monotonic() - started, 1),
        "summary": (
            f"pretrained on {spec.num_subjects} public synthetic subjects ({len(data)} clips, "
            f"seed {spec.seed}), {cfg.pretrain_epochs} epochs"
        ),
    }
    write_json_atomic(folder / PRETRAINING_FILE, record)
    return weights


def with_public_start(cfg: RunConfig, workers: int = 1, progress: bool = False) -> RunConfig:
    """``cfg`` pointing at its pretrained start, when it asks for one and names none."""
    if cfg.pretrain_subjects <= 0 or cfg.initial_model:
        return cfg
    return cfg.replace(initial_model=str(pretrained_model(cfg, workers, progress)))
