"""Distributed noise under SecAgg+, on real processes: the coordinator never adds noise.

A real SuperLink (TLS, node authentication) and 5 real training SuperNodes on
127.0.0.1; one of them drops out of the SecAgg+ round after the key exchange
(its node config's minimum noise multiplier is above the run's, so it
refuses to add its share: a real dropout, no mock). The 4 survivors each add
Skellam noise of variance (z Δ2)^2 / threshold on SecAgg+'s lattice, with the
threshold at 4: the unmasked sum must carry exactly the target noise z Δ2.

The devices train without DP-SGD (their node configs allow it), so this test
can recompute every survivor's clipped update from the same data, seed and
code, and measure the noise itself: W x (final - initial) - sum of clipped
updates, over all 1,683 coordinates of the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from client.accountant_state import LEDGER_FILE
from client.dp_training import device_seed
from client.plain_training import LocalSchedule, train_plain
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.privacy.client_level import clip_update, sum_updates
from common.privacy.distributed_noise import SkellamShare, lattice_clipping_range, skellam_epsilon
from simulations.deployment import LocalDeployment
from simulations.flower_processes import is_alive, tagged_pids
from tests.deployment_data import device_dirs, warm

NUM_TRAIN, THRESHOLD = 5, 4
Z, CLIP, DELTA = 1.0, 0.05, 1e-5
SEED, LR, BATCH = 0, 0.5, 4


@pytest.fixture(scope="module")
def secure_run(tmp_path_factory):
    data = device_dirs(tmp_path_factory.mktemp("data"), ["train"] * NUM_TRAIN, 3, seed=700)
    dep = LocalDeployment(tmp_path_factory.mktemp("deployment"))
    out = tmp_path_factory.mktemp("run")
    dropped = data[0].name
    try:
        dep.start_superlink()
        for d in data:
            policy = {"allow-non-private": True}
            if d.name == dropped:
                policy["min-noise-multiplier"] = 5.0  # refuses the run's z = 1
            dep.start_supernode(dep.add_device(d.name, d, **policy))
        dep.wait_online(NUM_TRAIN, timeout=180)
        run_config = {
            "num-server-rounds": 1,
            "min-nodes": NUM_TRAIN,
            "local-epochs": 1,
            "batch-size": BATCH,
            "learning-rate": LR,
            "dp-sgd": False,
            "client-noise-multiplier": Z,
            "client-clipping-norm": CLIP,
            "delta": DELTA,
            "secagg": True,
            "secagg-num-shares": NUM_TRAIN,
            "secagg-reconstruction-threshold": THRESHOLD,
            "round-timeout": 240.0,
            "out-dir": str(out),
        }
        code, log = dep.flwr_run(run_config, timeout=600)
        assert code == 0, dep.logs_text()[-8000:]
        yield out, data, dropped, dep
    finally:
        started = [p.pid for p in dep.processes]
        dep.close()
        leftovers = [pid for pid in started if is_alive(pid)] + tagged_pids(dep.tag)
        assert not leftovers, f"processes still running after close(): {leftovers}"


def _survivors_clipped_sum(data, dropped) -> tuple[list[np.ndarray], list[np.ndarray]]:
    torch.manual_seed(SEED)  # the ServerApp's seeded initial model
    initial = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES)).state_dict()
    global_arrays = [t.numpy().copy() for t in initial.values()]
    updates = []
    for d in data:
        if d.name == dropped:
            continue
        local = warm(d, "train")
        model = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES))
        model.load_state_dict(initial)
        schedule = LocalSchedule(1, BATCH, LR)
        train_plain(model, local.features, local.labels, schedule, device_seed(SEED, 1, d.name))
        new = [t.detach().numpy() for t in model.state_dict().values()]
        updates.append(clip_update([n - g for n, g in zip(new, global_arrays)], CLIP))
    return global_arrays, sum_updates(updates)


def test_the_round_completes_without_the_device_that_refused_its_share(secure_run):
    out, data, dropped, dep = secure_run
    [round_1] = json.loads((out / "results.json").read_text())["rounds"]
    assert sorted(round_1["trained"]) == sorted(d.name for d in data if d.name != dropped)
    assert list(round_1["failed"]) == [dropped]
    # The refusal is signed into the dropped device's own ledger, in its state-dir.
    state_dir = Path(str(dep.devices[dropped].node_config["state-dir"]))
    [refusal] = [json.loads(x) for x in (state_dir / LEDGER_FILE).read_text().splitlines()]
    assert (refusal["event"], refusal["mechanism"]) == ("refused", "skellam-share")
    assert refusal["note"].startswith("noise-below-policy")


def test_the_unmasked_sum_carries_exactly_the_devices_noise(secure_run):
    out, data, dropped, _ = secure_run
    global_arrays, clipped_sum = _survivors_clipped_sum(data, dropped)
    final = torch.load(out / "final_model.pt", weights_only=True)
    # new = old + (sum of clipped updates + noise) / W, with W = 5 expected devices.
    noise = np.concatenate(
        [
            (NUM_TRAIN * (f.numpy().astype(np.float64) - g) - s).ravel()
            for f, g, s in zip(final.values(), global_arrays, clipped_sum)
        ]
    )
    assert noise.size >= 1000
    dimension = noise.size
    share = SkellamShare(Z, CLIP, dimension, lattice_clipping_range(CLIP, Z, THRESHOLD), THRESHOLD)
    target = share.std_in_model_units(THRESHOLD)  # 4 survivors = the threshold: exactly z Δ2
    assert target == pytest.approx(Z * (CLIP + math.sqrt(dimension) / share.scale), rel=1e-12)
    # Within 10% of the target: a coordinator that added its own noise on top
    # (sqrt 2 more), or devices that added less, would fail here.
    assert np.std(noise) == pytest.approx(target, rel=0.1), (np.std(noise), target)
    assert abs(np.mean(noise)) < 4 * target / math.sqrt(dimension)


def test_the_release_is_accounted_as_the_survivors_skellam_mechanism(secure_run):
    out, _, _, _ = secure_run
    results = json.loads((out / "results.json").read_text())
    client_level = results["privacy"]["client_level"]
    assert client_level["noise"].startswith("distributed Skellam")
    [release] = [
        json.loads(line)
        for line in (out / "ledger" / "server.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert release["mechanism"] == "dp-fedavg-skellam"
    assert release["note"].startswith("4 devices each added Skellam variance")
    dimension = 1683
    share = SkellamShare(Z, CLIP, dimension, lattice_clipping_range(CLIP, Z, THRESHOLD), THRESHOLD)
    expected = skellam_epsilon([share.release(4)], DELTA)
    assert client_level["epsilon"] == pytest.approx(expected, abs=1e-3)
    assert release["sigma"] == pytest.approx(Z, rel=1e-9)
