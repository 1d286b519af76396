"""One federated loop over every transport: in-process and Flower's Simulation Runtime agree.

The same ServerApp main loop and ClientApp run a 2-round, 4-device federation
(3 training subjects, 1 held out) with DP off and a fixed seed over the
in-process transport (all devices in this process, and spread over 2 worker
processes) and over Flower's Simulation Runtime (Ray). Without
noise every step is determined by the seed, so the final global models must
agree to 1e-6, and both runs must write the one results schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.results_schema import validate_results
from common.run_config import RunConfig
from simulations.default_cohort import ensure_cohort
from simulations.federation import prepare_federation, run_federation
from simulations.synthetic import CohortSpec
from tests.scenarios import CLIP_LEVEL

TRANSPORTS = (
    ("in-process", "in-process", 1),
    ("in-process-workers", "in-process", 2),
    ("simulation", "simulation", 1),
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDMER_CACHE", str(tmp_path_factory.getbasetemp() / "fedmer-cache"))
    manifest = ensure_cohort(CohortSpec(num_subjects=4, clips_per_class=2, seed=0))
    cfg = RunConfig(
        **CLIP_LEVEL,
        num_server_rounds=2,
        local_epochs=1,
        batch_size=4,
        learning_rate=0.05,
        dp_sgd=False,
        num_heldout_subjects=1,
        seed=7,
    )
    out = {}
    for name, transport, workers in TRANSPORTS:
        run_dir = tmp_path_factory.mktemp(name)
        run_cfg, devices = prepare_federation(
            cfg, manifest, run_dir, policy={"allow_non_private": True}
        )
        assert len(devices) == 4
        run_federation(run_cfg, devices, transport=transport, workers=workers)
        out[name] = run_dir
    mp.undo()
    return out


@pytest.mark.parametrize("other", ["in-process-workers", "simulation"])
def test_final_global_models_agree_across_transports(runs: dict[str, Path], other: str) -> None:
    local = torch.load(runs["in-process"] / "final_model.pt")
    theirs = torch.load(runs[other] / "final_model.pt")
    assert list(local) == list(theirs)
    for name in local:
        np.testing.assert_allclose(
            local[name].numpy(), theirs[name].numpy(), atol=1e-6, err_msg=name
        )
    initial = _initial_model(7)
    moved = any(not torch.allclose(initial[k], local[k]) for k in local)
    assert moved  # the devices really trained: the model is not the initial one


def test_both_transports_write_the_one_results_schema(runs: dict[str, Path]) -> None:
    docs = {t: json.loads((d / "results.json").read_text()) for t, d in runs.items()}
    for doc in docs.values():
        validate_results(doc)
        assert [r["round"] for r in doc["rounds"]] == [1, 2]
        assert sorted(doc["devices"].values()) == ["heldout", "train", "train", "train"]
    # Same devices and ids on both transports (held-out counts are released
    # with fresh Gaussian noise, so they differ from run to run by design).
    assert docs["in-process"]["devices"] == docs["simulation"]["devices"]
    assert docs["in-process"]["devices"] == docs["in-process-workers"]["devices"]


def test_a_broken_results_document_fails_the_schema(runs: dict[str, Path]) -> None:
    from common.results_schema import ResultsSchemaError

    doc = json.loads((runs["in-process"] / "results.json").read_text())
    del doc["rounds"][0]["epsilon"]
    with pytest.raises(ResultsSchemaError, match=r"results.rounds\[0\] lacks 'epsilon'"):
        validate_results(doc)


def _initial_model(seed: int) -> dict[str, torch.Tensor]:
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    torch.manual_seed(seed)
    return build_model("ststnet", num_classes=len(COMPOSITE_CLASSES)).state_dict()


def _die_on_train(msg, context, call_next):
    """Test scaffolding: the device worker process exits in the middle of a round."""
    import os

    if msg.metadata.message_type == "train":
        os._exit(3)
    return call_next(msg, context)


def test_a_dead_device_worker_stops_the_run_with_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDMER_CACHE", str(tmp_path / "fedmer-cache"))
    manifest = ensure_cohort(CohortSpec(num_subjects=4, clips_per_class=2, seed=0))
    cfg = RunConfig(**CLIP_LEVEL, num_server_rounds=1, dp_sgd=False, num_heldout_subjects=1, seed=7)
    run_cfg, devices = prepare_federation(
        cfg, manifest, tmp_path / "run", policy={"allow_non_private": True}
    )
    with pytest.raises(RuntimeError, match=r"in-process device worker\(s\) \[\d+"):
        run_federation(
            run_cfg, devices, transport="in-process", extra_mods=[_die_on_train], workers=2
        )
