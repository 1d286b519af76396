"""Real processes on 127.0.0.1: flower-superlink (TLS + node auth), flower-supernodes, `flwr run .`.

Every process is started by :class:`simulations.deployment.LocalDeployment`
and stopped by PID in its ``close()`` (fixture ``finally``), also on failure.

To keep the file fast on a small machine, one federation (SuperLink + 3
training SuperNodes + 1 held-out SuperNode, each with its own pre-generated
and pre-warmed data directory) is shared by the module: the rejected devices
are started against it in the background while the full run trains, and the
kill-a-device and coordinator-restart runs reuse it afterwards. Each registered
device runs its warm worker (``fedmer device-worker``), as the runbook
recommends: its SuperNode's ClientApp processes hand every message to it, so
these runs go through the worker path end to end (``test_distributed_noise.py``
keeps a ClientApp process per message, with SecAgg+). Its SuperLink
keeps its state in a database file, so the coordinator-restart test restarts
the SuperLink alone: the same SuperNode processes reconnect.

Tests marked ``needs_checkpoint_wiring`` exercise behaviour that exists only
once ``server/server_app.py`` uses :mod:`server.checkpoint`; they skip until then.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from simulations.deployment import LocalDeployment, RunningProcess
from simulations.flower_processes import is_alive, tagged_pids
from tests.deployment_data import device_dirs, warm
from tests.scenarios import CLIP_LEVEL

NUM_TRAIN = 3
CLIPS_PER_CLASS = 12  # 36 clips per device, 12 of each class
# DP-SGD (target ε 8 over the run) on few clips is noisy, and the noise comes
# from a secret source, so it cannot be seeded. With 18 clips per device one
# clean-clone CI run ended at a constant predictor (held-out UF1 0.33) and
# 12 in-process repeats spread over 0.48-1.00; with 36 clips 10 repeats ended
# at 0.72-1.00, 8 of them >= 0.92. The learning rate is 0.1, not the default
# 0.5, which collapsed 2 of 8 repeats (see docs/deployment.md, "Tests").
LEARNING_RATE = 0.1
# A device whose key is not registered, and one that connects without TLS:
# started in the background as soon as the SuperLink is up.
DEVICE_BUDGET = 40.0
REJECT_RETRIES = 1
REJECT_WAIT = 20.0


def _checkpoint_wired() -> bool:
    source = (Path(__file__).resolve().parents[2] / "server" / "server_app.py").read_text()
    return "server.checkpoint" in source


needs_checkpoint_wiring = pytest.mark.skipif(
    not _checkpoint_wired(),
    reason="server/server_app.py does not persist/resume via server.checkpoint yet "
    "(checkpoint wiring is a separate task); this test needs it",
)


@pytest.fixture(scope="module")
def device_data(tmp_path_factory) -> list[Path]:
    """One synthetic subject per device (different seeds): 3 training, 1 held out."""
    roles = ["train"] * NUM_TRAIN + ["heldout"]
    return device_dirs(tmp_path_factory.mktemp("device-data"), roles, CLIPS_PER_CLASS, seed=600)


@dataclass
class Federation:
    dep: LocalDeployment
    nodes: list[RunningProcess]
    stranger: RunningProcess  # unregistered key
    plain: RunningProcess  # --insecure against the TLS SuperLink


@pytest.fixture(scope="module")
def federation(tmp_path_factory, device_data):
    dep = LocalDeployment(tmp_path_factory.mktemp("deployment"), device_workers=True)
    started: list[int] = []
    try:
        dep.start_superlink()
        nodes = []
        for i, d in enumerate(device_data):
            role = "heldout" if i == NUM_TRAIN else "train"
            # The module runs 2 federated runs of target ε 8 on the same
            # devices, whose ledgers persist: a lifetime budget of 40 covers all three (full, kill, resume).
            device = dep.add_device(d.name, d, role=role, **{"epsilon-budget": DEVICE_BUDGET})
            nodes.append(dep.start_supernode(device))
        stranger = dep.start_supernode(
            dep.add_device("stranger", device_data[0], register=False),
            max_retries=REJECT_RETRIES,
            max_wait_time=REJECT_WAIT,
            worker=False,
        )
        # Registered, but it offers no TLS (and no key) to the TLS SuperLink.
        plain = dep.start_supernode(
            dep.add_device("plain", device_data[1], register=False),
            tls=False,
            auth=False,
            max_retries=REJECT_RETRIES,
            max_wait_time=REJECT_WAIT,
            worker=False,
        )
        dep.wait_online(NUM_TRAIN + 1, timeout=180)
        yield Federation(dep, nodes, stranger, plain)
    finally:
        started = [p.pid for p in dep.processes]
        dep.close()
        leftovers = [pid for pid in started if is_alive(pid)] + tagged_pids(dep.tag)
        assert not leftovers, f"processes still running after close(): {leftovers}"


def _run_config(out: Path, rounds: int = 2, **extra) -> dict:
    cfg = {
        "num-server-rounds": rounds,
        "min-nodes": NUM_TRAIN + 1,
        "local-epochs": 1,
        "learning-rate": LEARNING_RATE,
        "round-timeout": 240.0,
        "out-dir": str(out),
        # Clip-level, random start: the scenario these deployment checks were written for.
        "dp-unit": CLIP_LEVEL["dp_unit"],
    }
    cfg.update(extra)
    return cfg


def _heldout_accuracy(state_dict: dict, data_dir: Path) -> float:
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    local = warm(data_dir, "heldout")
    model = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(state_dict)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(local.features)).argmax(1)
    return (pred == torch.from_numpy(local.labels)).float().mean().item()


def test_full_federated_run_over_tls_with_node_auth(federation, device_data, tmp_path):
    dep = federation.dep
    out = tmp_path / "run"
    code, log = dep.flwr_run(_run_config(out), timeout=600)
    assert code == 0, dep.logs_text()[-8000:]
    assert "[fedmer] round  2/2" in log, log[-4000:]
    results = json.loads((out / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    train_ids = sorted(d.name for d in device_data[:NUM_TRAIN])
    assert all(sorted(r["trained"]) == train_ids for r in rounds), rounds
    assert rounds[1]["epsilon"] > rounds[0]["epsilon"] > 0  # DP-SGD really ran
    assert results["devices"][device_data[-1].name] == "heldout"
    # The global model improved on the held-out device's clips: the final
    # model beats the ServerApp's seeded starting point (which predicts one
    # class: accuracy 1/3), computed here exactly, on the device's data. The
    # coordinator's own figures come from Gaussian-noised counts, each
    # release accounted in the held-out device's ledger.
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    torch.manual_seed(0)
    initial = build_model("ststnet", num_classes=len(COMPOSITE_CLASSES)).state_dict()
    final = torch.load(out / "final_model.pt", weights_only=True)
    acc0 = _heldout_accuracy(initial, device_data[-1])
    acc_final = _heldout_accuracy(final, device_data[-1])
    assert acc_final > acc0, (acc0, acc_final)
    heldout = device_data[-1].name
    assert all(r["heldout_noise_std"][heldout] > 0 for r in rounds)
    released = out / "ledger" / "devices" / f"{heldout}.jsonl"
    entries = [json.loads(line) for line in released.read_text().splitlines()]
    assert [e["mechanism"] for e in entries] == ["gaussian-counts"] * 2
    # A privacy officer's audit of the real-process run: every entry signed by the key the
    # operator registered for its device, every chain ending at the head the
    # coordinator receipted in its signed manifest.
    audit = dep.audit(out / "ledger", tmp_path / "a", timeout=300)
    assert audit.returncode == 0, audit.stdout[-4000:]
    manifest = json.loads((out / "ledger" / "manifest.json").read_text())
    assert [r["round"] for r in manifest["rounds"]] == [1, 2]
    assert sorted(manifest["devices"]) == sorted(d.name for d in device_data)


def test_unregistered_key_and_plain_tcp_are_rejected(federation):
    dep = federation.dep
    # Both were started next to the registered devices; both give up with
    # flwr's exit code 305 (SUPERNODE_CONNECTION_ERROR, in their log; the
    # process status itself is 1) instead of joining.
    stranger_code = federation.stranger.wait_exit(240)
    plain_code = federation.plain.wait_exit(240)
    assert stranger_code not in (None, 0), federation.stranger.log()[-3000:]
    assert plain_code not in (None, 0), federation.plain.log()[-3000:]
    assert "Exit Code: 305" in federation.stranger.log()
    assert "Exit Code: 305" in federation.plain.log()
    # The SuperLink refused the unknown key (ApiError 2004) ...
    assert "No SuperNode found with the given public key" in dep.superlink.log()
    assert "[code: 2004] Failed to activate SuperNode" in federation.stranger.log()
    # ... and the plain-TCP client never got an HTTP response from the TLS port: the
    # TLS server drops the connection on its first bytes, which the client sees as a
    # disconnect or, when the drop races its write (a CI run), as a reset.
    plain_log = federation.plain.log()
    assert any(
        reason in plain_log
        for reason in ("Server disconnected without sending a response", "Connection reset by peer")
    ), plain_log[-3000:]
    assert "could not establish a connection" in plain_log, plain_log[-3000:]
    # Only the 4 registered devices ever came online.
    assert dep.online_nodes() == NUM_TRAIN + 1
    assert all(n.proc.poll() is None for n in federation.nodes)


def _wait_for(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_killing_a_device_mid_round_does_not_stop_the_run(federation, tmp_path):
    dep = federation.dep
    victim = federation.nodes[0]
    device = victim.extra["device"]
    out = tmp_path / "run"
    before = victim.log().count("Receiving: train message")
    # Three rounds: the restarted SuperNode may still be activating when round 2
    # samples its devices (a CI run's round 2 began before it was back); it is
    # back for a later round.
    run = dep.start_run(_run_config(out, rounds=3), name="flwr-run-kill")
    # Kill the victim (SIGKILL: a crash, not a shutdown) once it has its
    # round-1 training message.
    assert _wait_for(lambda: victim.log().count("Receiving: train message") > before, 300), (
        dep.logs_text()[-6000:]
    )
    dep.stop(victim, signal.SIGKILL)
    # The SuperLink declares it unavailable after 2 missed heartbeats, which
    # ends round 1 for it; then it comes back with the same key (the same
    # registered node) and is trained again in a later round.
    assert _wait_for(lambda: dep.online_nodes() == NUM_TRAIN, 120, step=2.0), dep.logs_text()[
        -6000:
    ]
    federation.nodes[0] = dep.start_supernode(device)
    code = run.wait_exit(600)
    assert code == 0, dep.logs_text()[-8000:]
    results = json.loads((out / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert device.device_id not in rounds[0]["trained"]
    assert len(rounds[0]["trained"]) == NUM_TRAIN - 1, rounds[0]
    assert any(device.device_id in r["trained"] for r in rounds[1:]), rounds


# The SuperLink is down at least this long, longer than a SuperNode's idle wait
# between pulls (3 s, fixed in flwr 1.41), so every SuperNode sees it gone.
OUTAGE_SECONDS = 4.0
# A SuperNode waits at most 20 s (jittered) between tries: it is back within about
# that long after the SuperLink is.
RECONNECT_TIMEOUT = 60.0
RECONNECTED = "Connection successful after"


@needs_checkpoint_wiring
def test_coordinator_restart_resumes_at_round_2_with_the_same_supernodes(federation, tmp_path):
    """SIGKILL the SuperLink (and its ServerApp) after round 1; start it again on the
    same port with the same database file: the SuperNode processes, never restarted
    nor registered again, reconnect under their node ids and the run resumes."""
    dep = federation.dep
    nodes = list(federation.nodes)
    pids = [n.pid for n in nodes]
    node_ids = sorted(int(n.extra["device"].node_config["_node-id"]) for n in nodes)
    out = tmp_path / "run"
    latest = out / "checkpoints" / "latest.json"
    cfg = _run_config(out, rounds=2)
    run = dep.start_run(cfg, name="flwr-run-resume")
    # Killed as soon as round 1's checkpoint is on disk: before round 2's
    # instructions (sent right after it) can reach a device.
    assert _wait_for(latest.exists, 300, step=0.02), dep.logs_text()[-6000:]
    killed_tree = dep.crash_superlink()
    down = time.monotonic()
    dep.stop(run)
    assert not any(
        is_alive(p) and b"flwr-serverapp" in Path(f"/proc/{p}/cmdline").read_bytes()
        for p in killed_tree
    )
    first = json.loads(latest.read_text())["round"]
    killed_run = json.loads((out / "ledger" / "manifest.json").read_text())["run_id"]
    reconnects = [n.log().count(RECONNECTED) for n in nodes]
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
    assert all(is_alive(p) for p in pids), dep.logs_text()[-6000:]

    dep.start_superlink()  # same port, same database file
    back = time.monotonic()
    assert _wait_for(
        lambda: all(n.log().count(RECONNECTED) > k for n, k in zip(nodes, reconnects)),
        RECONNECT_TIMEOUT,
    ), dep.logs_text()[-8000:]
    reconnected_after = time.monotonic() - back
    code, log = dep.flwr_run(cfg, timeout=600)
    assert code == 0, dep.logs_text()[-8000:]
    assert f"resuming at round {first + 1}" in log, log[-4000:]

    # The same processes did the work, under the node ids registered before the crash.
    assert [n.pid for n in federation.nodes] == pids and all(is_alive(p) for p in pids)
    listed = dep.flwr_cli(["supernode", "ls", "fedmer-deployment", "--format", "json"]).stdout
    listed_nodes = json.loads(listed[listed.index("{") :])["nodes"]
    assert sorted(int(n["node-id"]) for n in listed_nodes) == node_ids, listed
    assert all(n["status"] == "online" for n in listed_nodes), listed
    results = json.loads((out / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2], (reconnected_after, rounds)
    train_ids = sorted(n.extra["device"].device_id for n in nodes[:NUM_TRAIN])
    assert all(sorted(r["trained"]) == train_ids for r in rounds), rounds
    # ε is counted once per round: it grows strictly, with no reset and no repeat.
    eps = [r["epsilon"] for r in rounds]
    assert all(a < b for a, b in zip(eps, eps[1:])), eps
    # On every training device, the killed run spent nothing after its checkpointed
    # round and the resumed run spent once per remaining round. Round 1's checkpoint
    # is written before its held-out evaluation (which rides with round 2's
    # training), so the held-out device evaluates round 1 in the resumed run.
    resumed_run = json.loads((out / "ledger" / "manifest.json").read_text())["run_id"]
    for node in nodes[:NUM_TRAIN]:
        spent = _rounds_spent(Path(str(node.extra["device"].node_config["state-dir"])))
        assert spent.get(killed_run) == list(range(1, first + 1)), (node.name, spent)
        assert spent.get(resumed_run) == list(range(first + 1, 3)), (node.name, spent)
    for node in nodes[NUM_TRAIN:]:
        spent = _rounds_spent(Path(str(node.extra["device"].node_config["state-dir"])))
        assert spent.get(killed_run, []) in ([], list(range(1, first + 1))), (node.name, spent)
        assert spent.get(resumed_run) == list(range(first, 3)), (node.name, spent)
    _assert_single_chains(out / "ledger", rounds=2)


def _rounds_spent(state_dir: Path) -> dict[str, list[int]]:
    """The rounds of each run a device's own (lifetime) ledger records spending in."""
    from client.accountant_state import LEDGER_FILE
    from common.privacy.ledger import decode_entry

    spent: dict[str, list[int]] = {}
    for line in (state_dir / LEDGER_FILE).read_text().splitlines():
        if line.strip() and (entry := decode_entry(line))["event"] in ("train", "release"):
            spent.setdefault(str(entry["run_id"]), []).append(int(entry["round"]))
    return spent


def _assert_single_chains(ledger_dir: Path, rounds: int) -> None:
    """Every ledger file is one unbroken, signed hash chain, one train entry per round."""
    from common.privacy.ledger import GENESIS_HASH, decode_entry, entry_hash, signature_is_valid

    files = sorted(ledger_dir.rglob("*.jsonl"))
    assert files
    for path in files:
        entries = [decode_entry(line) for line in path.read_text().splitlines() if line.strip()]
        # The devices of this module took part in earlier runs, so the copies
        # this run's server kept start where this run began on each device's
        # lifetime chain; from there on they must be contiguous and linked.
        first = entries[0]["seq"]
        prev = GENESIS_HASH if first == 0 else entries[0]["prev_hash"]
        for seq, entry in enumerate(entries, start=first):
            assert entry["seq"] == seq and entry["prev_hash"] == prev, path
            assert signature_is_valid(entry), path
            prev = entry_hash(entry)
        # One spend per round of each run (a round trained before a crash and
        # evaluated after it is two runs' entries).
        spends = [(e["run_id"], e["round"]) for e in entries if e["event"] in ("train", "release")]
        assert len(spends) == len(set(spends)), (path, spends)
        assert len({r for _, r in spends}) <= rounds, (path, spends)
