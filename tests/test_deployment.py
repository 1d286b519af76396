"""Real processes on 127.0.0.1: flower-superlink (TLS + node auth), flower-supernodes, `flwr run .`.

Every process is started by :class:`simulations.deployment.LocalDeployment`
and stopped by PID in its ``close()`` (fixture ``finally``), also on failure.

Tests marked ``needs_checkpoint_wiring`` exercise behaviour that exists only
once ``server/server_app.py`` uses :mod:`server.checkpoint`; they skip until then.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simulations.deployment import LocalDeployment, descendants
from simulations.synthetic import CohortSpec, generate_cohort

NUM_TRAIN = 3


def _checkpoint_wired() -> bool:
    source = (Path(__file__).resolve().parents[1] / "server" / "server_app.py").read_text()
    return "server.checkpoint" in source


needs_checkpoint_wiring = pytest.mark.skipif(
    not _checkpoint_wired(), reason="server_app.py does not use server.checkpoint yet"
)


@pytest.fixture(scope="module")
def device_data(tmp_path_factory) -> list[Path]:
    """One synthetic subject per device (different seeds): 3 training, 1 held out."""
    root = tmp_path_factory.mktemp("device-data")
    dirs = []
    for i in range(NUM_TRAIN + 1):
        d = root / f"device-{i + 1:03d}"
        generate_cohort(d, CohortSpec(num_subjects=1, clips_per_class=3, seed=600 + i))
        dirs.append(d)
    return dirs


@pytest.fixture
def deployment(tmp_path):
    dep = LocalDeployment(tmp_path / "deployment")
    try:
        yield dep
    finally:
        pids = [p.pid for p in dep.processes]
        dep.close()
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def _start_federation(dep: LocalDeployment, data: list[Path], **node_config) -> list:
    dep.start_superlink()
    nodes = []
    for i, d in enumerate(data):
        role = "heldout" if i == NUM_TRAIN else "train"
        device = dep.add_device(d.name, d, role=role, **node_config.get(d.name, {}))
        nodes.append(dep.start_supernode(device))
    dep.wait_online(len(nodes))
    return nodes


def _run_config(out: Path, rounds: int = 2, **extra) -> dict:
    cfg = {"num-server-rounds": rounds, "min-nodes": NUM_TRAIN + 1, "local-epochs": 1,
           "round-timeout": 240.0, "out-dir": str(out)}
    cfg.update(extra)
    return cfg


def _heldout_loss(state_dict: dict, data_dir: Path) -> tuple[float, float]:
    """Cross-entropy and accuracy of a model on the held-out device's clips."""
    from client.local_data import load_local_data
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model
    from common.run_config import RunConfig

    local = load_local_data({"data-dir": str(data_dir), "role": "heldout",
                             "cache-dir": str(data_dir / ".fedmer-cache")}, RunConfig())
    model = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(state_dict)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(local.features))
        labels = torch.from_numpy(local.labels)
        loss = torch.nn.functional.cross_entropy(logits, labels).item()
        acc = (logits.argmax(1) == labels).float().mean().item()
    return loss, acc


def test_full_federated_run_over_tls_with_node_auth(deployment, device_data, tmp_path):
    _start_federation(deployment, device_data)
    out = tmp_path / "run"
    code, log = deployment.flwr_run(_run_config(out), timeout=420)
    assert code == 0, deployment.logs_text()[-8000:]
    assert "[fedmer] round  2/2" in log, log[-4000:]
    results = json.loads((out / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(len(r["trained"]) == NUM_TRAIN for r in rounds)
    assert rounds[1]["epsilon"] > rounds[0]["epsilon"] > 0  # DP-SGD really ran
    # The global model improved on the held-out device: compared with the
    # ServerApp's seeded starting point, on that device's clips.
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    torch.manual_seed(0)
    initial = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES)).state_dict()
    final = torch.load(out / "final_model.pt", weights_only=True)
    loss0, acc0 = _heldout_loss(initial, device_data[-1])
    loss1, acc1 = _heldout_loss(final, device_data[-1])
    assert loss1 < loss0, (loss0, loss1)
    assert acc1 >= acc0 and rounds[-1]["uf1"] > 1 / 3, (acc0, acc1, rounds[-1]["uf1"])
    # The SuperLink saw TLS-authenticated nodes only.
    assert "No SuperNode found" not in deployment.superlink.log()


def test_unregistered_key_and_plain_tcp_are_rejected(deployment, device_data):
    deployment.start_superlink()
    good = deployment.add_device("registered", device_data[0])
    stranger = deployment.add_device("stranger", device_data[1], register=False)
    plain = deployment.add_device("plain", device_data[2])
    ok = deployment.start_supernode(good)
    rejected = deployment.start_supernode(stranger, max_retries=1, max_wait_time=30)
    no_tls = deployment.start_supernode(plain, tls=False, auth=False, max_retries=1, max_wait_time=30)
    assert rejected.wait_exit(90) not in (None, 0), rejected.log()[-3000:]
    assert no_tls.wait_exit(90) not in (None, 0), no_tls.log()[-3000:]
    assert "No SuperNode found with the given public key" in deployment.superlink.log()
    assert "could not establish a connection" in no_tls.log()
    deployment.wait_online(1)
    time.sleep(2)
    assert deployment.online_nodes() == 1
    assert ok.proc.poll() is None


def test_killing_a_device_mid_round_does_not_stop_the_run(deployment, device_data, tmp_path):
    nodes = _start_federation(deployment, device_data)
    out = tmp_path / "run"
    run = deployment.start_run(_run_config(out, rounds=3, **{"min-nodes": NUM_TRAIN + 1,
                                                             "round-timeout": 90.0}))
    victim = nodes[0]
    # Wait until the victim is training in round 1 (its ClientApp process exists).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and "Receiving: train message" not in victim.log():
        time.sleep(0.5)
    assert "Receiving: train message" in victim.log(), deployment.logs_text()[-6000:]
    deployment.stop(victim, signal.SIGKILL)
    # It comes back (same key, so the same registered node) for a later round.
    time.sleep(5)
    device = victim.extra["device"]
    deployment.start_supernode(device)
    code = run.wait_exit(420)
    assert code == 0, deployment.logs_text()[-8000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3]
    assert device.device_id not in results["rounds"][0]["trained"]
    assert any(device.device_id in r["trained"] for r in results["rounds"][1:]), results["rounds"]


@needs_checkpoint_wiring
def test_killing_the_server_after_round_1_resumes_at_round_2(deployment, device_data, tmp_path):
    _start_federation(deployment, device_data)
    out = tmp_path / "run"
    cfg = _run_config(out, rounds=3)
    run = deployment.start_run(cfg)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / "checkpoints" / "latest.json").exists():
        time.sleep(0.5)
    assert (out / "checkpoints" / "latest.json").exists(), deployment.logs_text()[-6000:]
    # Kill the SuperLink (and the ServerApp it runs) hard, then the CLI stream.
    superlink_tree = [deployment.superlink.pid, *descendants(deployment.superlink.pid)]
    deployment.stop(deployment.superlink, signal.SIGKILL)
    deployment.stop(run)
    assert not any(Path(f"/proc/{p}/cmdline").exists() and b"flwr-serverapp" in
                   Path(f"/proc/{p}/cmdline").read_bytes() for p in superlink_tree)
    first = json.loads((out / "checkpoints" / "latest.json").read_text())["round"]
    # Restart on the same port; SuperNodes reconnect (registrations re-added).
    deployment.start_superlink(port=deployment.superlink_port)
    for device in deployment.devices.values():
        deployment.register(device)
    deployment.wait_online(NUM_TRAIN + 1, timeout=120)
    code, log = deployment.flwr_run(cfg, timeout=420)
    assert code == 0, deployment.logs_text()[-8000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3]
    assert f"resuming at round {first + 1}" in log
    # ε is counted once per round: it grows strictly, with no reset.
    eps = [r["epsilon"] for r in results["rounds"]]
    assert eps == sorted(eps) and len(set(eps)) == 3
    _assert_single_chains(out / "ledger", rounds=3)


def _assert_single_chains(ledger_dir: Path, rounds: int) -> None:
    """Every ledger file is one unbroken, signed hash chain, one train entry per round."""
    from common.privacy.ledger import GENESIS_HASH, decode_entry, entry_hash, signature_is_valid

    files = sorted(ledger_dir.rglob("*.jsonl"))
    assert files
    for path in files:
        entries = [decode_entry(line) for line in path.read_text().splitlines() if line.strip()]
        prev = GENESIS_HASH
        for seq, entry in enumerate(entries):
            assert entry["seq"] == seq and entry["prev_hash"] == prev, path
            assert signature_is_valid(entry), path
            prev = entry_hash(entry)
        train_rounds = [e["round"] for e in entries if e["event"] in ("train", "release")]
        assert len(train_rounds) == len(set(train_rounds)) <= rounds, (path, train_rounds)
