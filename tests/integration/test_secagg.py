"""SecAgg+ acceptance: 5 training devices, one forced dropout, central noise 0.

The unmasked aggregate must equal the sum of the surviving devices' clipped
updates divided by the fixed denominator (the 5 expected participants). The devices train without DP-SGD here (their node configs
allow it), so each survivor's update can be recomputed in this process from
the same data, seed and code: with DP-SGD the sampling and noise are secret.
"""

import json

import numpy as np
import pytest
import torch

from client.dp_training import device_seed
from client.local_data import TRAIN, load_local_data
from client.plain_training import LocalSchedule, train_plain
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.privacy.client_level import clip_update, sum_updates
from common.run_config import RunConfig
from simulations.default_cohort import ensure_cohort
from simulations.faults import DropOut
from simulations.federation import prepare_federation, run_federation
from simulations.synthetic import CohortSpec
from tests.scenarios import CLIP_LEVEL

SUBJECTS, HELDOUT = 6, 1
CLIP_NORM = 0.05  # small enough that every update is actually clipped


@pytest.fixture(scope="module")
def secagg_run(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "fedmer-cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDMER_CACHE", str(cache))
    manifest = ensure_cohort(CohortSpec(num_subjects=SUBJECTS, clips_per_class=3, seed=0))
    out = tmp_path_factory.mktemp("secagg-run")
    cfg = RunConfig(
        **CLIP_LEVEL,
        num_server_rounds=1,
        local_epochs=1,
        batch_size=4,
        learning_rate=0.5,
        dp_sgd=False,
        client_noise_multiplier=0.0,
        client_clipping_norm=CLIP_NORM,
        secagg=True,
        secagg_num_shares=5,
        secagg_reconstruction_threshold=3,
        num_heldout_subjects=HELDOUT,
        cohort_subjects=SUBJECTS,
        cohort_clips_per_class=3,
        data_manifest=str(manifest),
        out_dir=str(out),
        min_nodes=SUBJECTS,
        round_timeout=300.0,
    )
    cfg, simulated = prepare_federation(cfg, manifest, out, policy={"allow_non_private": True})
    devices = [load_local_data(d.node_config, cfg.model) for d in simulated]
    train = [d for d in devices if d.role == TRAIN]
    assert len(train) == 5
    dropped = train[0].device_id
    # The dropout is a fault mod attached by this test only, on Flower's Simulation Runtime.
    run_federation(cfg, simulated, extra_mods=[DropOut(frozenset({dropped}))])
    mp.undo()
    return cfg, out, train, dropped


def test_round_completes_without_the_dropped_device(secagg_run):
    _, out, train, dropped = secagg_run
    results = json.loads((out / "results.json").read_text())
    round_1 = results["rounds"][0]
    assert sorted(round_1["trained"]) == sorted(
        d.device_id for d in train if d.device_id != dropped
    )
    assert list(round_1["failed"]) == [dropped]
    kept = sorted(p.stem for p in (out / "ledger" / "devices").glob("*.jsonl"))
    trained_kept = [k for k in kept if results["devices"].get(k) == "train"]
    assert dropped not in kept and len(trained_kept) == 4


def test_secure_aggregate_equals_the_surviving_clipped_updates_over_the_fixed_denominator(
    secagg_run,
):
    cfg, out, train, dropped = secagg_run
    torch.manual_seed(cfg.seed)  # the server's seeded initial model
    initial = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES)).state_dict()
    global_arrays = [t.numpy().copy() for t in initial.values()]
    updates = []
    for data in (d for d in train if d.device_id != dropped):
        model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
        model.load_state_dict(initial)
        train_plain(
            model,
            data.features,
            data.labels,
            LocalSchedule(cfg.local_epochs, cfg.batch_size, cfg.learning_rate),
            device_seed(cfg.seed, 1, data.device_id),
        )
        new = [t.detach().numpy() for t in model.state_dict().values()]
        update = [n - g for n, g in zip(new, global_arrays)]
        assert np.sqrt(sum((u**2).sum() for u in update)) > CLIP_NORM  # clipping is exercised
        updates.append(clip_update(update, CLIP_NORM))
    # Divided by the fixed denominator W = the 5 expected participants, not by the
    # 4 that survived: the divisor must not depend on who dropped out.
    expected = [g + s / len(train) for g, s in zip(global_arrays, sum_updates(updates))]
    secure = torch.load(out / "final_model.pt")
    for (name, got), want in zip(secure.items(), expected):
        # SecAgg+ quantizes [-C, C] into 2^22 levels: error ~ 2C / 2^22 per device.
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6, err_msg=name)
