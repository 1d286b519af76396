"""Cross-device person-level privacy: one subject per device, client-level DP-FedAvg
with Poisson device sampling, and a person-level ε an auditor recomputes with
dp-accounting from the coordinator's signed release entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.privacy.ledger import decode_entry
from tests.independent_accountant import ledger_rdp_epsilon

TARGET, RATE = 6.0, 0.5
PHONES = 48  # training devices of the SecAgg+ run


def _simulate(root, *extra: str):
    env = dict(os.environ, FEDMER_CACHE=str(root / "cache"))
    out = root / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "simulate", "--transport", "in-process",
         "--cohort-subjects", "12", "--num-heldout-subjects", "3", "--silos", "0",
         "--cohort-clips-per-class", "2", "--num-server-rounds", "3", "--no-dp-sgd",
         "--learning-rate", "0.05", "--client-target-epsilon", str(TARGET),
         "--client-sampling-rate", str(RATE), "--evaluation-epsilon", str(TARGET),
         "--server-optimizer", "momentum", "--server-learning-rate", "0.5",
         "--pretrain-subjects", "0", "--out-dir", str(out), *extra],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def cross_device_run(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("cross-device"))


def _releases(out):
    lines = (out / "ledger" / "server.jsonl").read_text().splitlines()
    return [e for e in map(decode_entry, lines) if e["event"] == "release"]


def test_the_person_level_epsilon_equals_a_recomputation_with_amplification(cross_device_run):
    out, results = cross_device_run
    releases = _releases(out)
    assert len(releases) == 3 and {e["q"] for e in releases} == {RATE}
    expected = ledger_rdp_epsilon(releases, 1e-5)
    people = results["privacy"]["person_level"]
    trained = {d for d, role in results["devices"].items() if role == "train"}
    assert len(trained) == 9 and set(people) >= trained
    took_part = {d for r in results["rounds"] for d in r["trained"]}
    assert took_part
    for device in took_part:
        assert people[device]["epsilon"] == pytest.approx(expected, abs=1e-3)
        assert "dp-fedavg" in people[device]["mechanisms"]
    for device in trained - took_part:  # never sampled: sent nothing, spent nothing
        assert people[device]["epsilon"] == 0.0
    assert 5.0 < expected <= TARGET + 1e-6
    # The amplification is claimed, and it matters: without it σ gives far more.
    assert ledger_rdp_epsilon([{**e, "q": 1.0} for e in releases], 1e-5) > expected + 2.0


def test_the_headline_says_it_does_not_hold_against_the_coordinator(cross_device_run):
    _, results = cross_device_run
    headline = results["privacy"]["headline"]
    assert headline["epsilon"] <= TARGET + 1e-6
    assert "not the coordinator" in headline["against"]
    # The devices sent their updates in the clear: against the coordinator, nothing holds.
    assert headline["against_coordinator_epsilon"] == float("inf")
    assert (
        "Poisson sampling of devices at q = 0.5" in results["privacy"]["client_level"]["sampling"]
    )
    # Each round asked a Poisson sample, not every device.
    asked = [len(r["trained"]) + len(r["declined"]) + len(r["failed"]) for r in results["rounds"]]
    assert all(n <= 9 for n in asked) and sum(asked) < 27


def test_a_device_declared_single_person_with_several_subjects_refuses(tmp_path):
    """The client-level figure is a person's only if the device holds one: it checks."""
    import numpy as np

    from client.accountant_state import open_device_state
    from client.local_data import LocalData
    from client.round_context import Refused, RoundContext
    from client.training_round import train_round
    from common.models import build_model
    from common.node_config import NodeConfig
    from common.run_config import RunConfig

    cfg = RunConfig(dp_sgd=False)
    node = NodeConfig(
        data_dir=str(tmp_path), state_dir=str(tmp_path / "state"), epsilon_budget=8.0,
        allow_non_private=True, single_person=True,
    )  # fmt: skip
    data = LocalData("phone-1", "train", np.zeros((4, 3, 28, 28), np.float32),
                     np.zeros(4, np.int64), subjects=("s1", "s1", "s2", "s2"))  # fmt: skip
    state = open_device_state(node.state_dir)
    assert state is not None
    ctx = RoundContext(data, node, cfg, state, "run-1", 1, nonce="n")
    outcome = train_round(build_model(cfg.model, num_classes=3), ctx)
    assert isinstance(outcome, Refused)
    assert outcome.refusal.code == "not-single-person"
    assert "the data holds 2" in outcome.refusal.detail
    # The refusal is signed into the device's ledger, spending nothing.
    assert state.ledger.entries()[-1]["event"] == "refused"


def test_the_auditor_counts_client_level_for_every_device_that_trained(cross_device_run):
    """From the ledgers and the operator-signed registry alone, without trusting results.json.

    The coordinator's releases protect each training device's whole
    participation, so every subject on it; a held-out device, which sends no
    update, keeps its own ledger's figure; without the server chain the
    devices' plain updates protect no one.
    """
    from common.privacy.audit_report import person_levels
    from common.privacy.key_registry import KeyRegistry
    from common.privacy.ledger_audit import audit_chain

    out, results = cross_device_run
    registry = KeyRegistry.read(out / "registry.json")
    audits = [audit_chain(p, registry=registry) for p in sorted((out / "ledger").rglob("*.jsonl"))]
    assert all(a.ok for a in audits), [a.failures for a in audits]
    expected = ledger_rdp_epsilon(_releases(out), 1e-5)
    people = person_levels(audits)
    took_part = {d for r in results["rounds"] for d in r["trained"]}
    for device in took_part:
        assert people[f"{device}.jsonl"].epsilon == pytest.approx(expected, abs=1e-3)
        assert people[f"{device}.jsonl"].against_coordinator == float("inf")
    heldout = [d for d, role in results["devices"].items() if role == "heldout"]
    assert heldout
    for device in heldout:
        assert "dp-fedavg" not in people[f"{device}.jsonl"].mechanisms
        assert people[f"{device}.jsonl"].epsilon == pytest.approx(TARGET, abs=1e-3)
    devices_only = [a for a in audits if a.path.name != "server.jsonl"]
    assert all(person_levels(devices_only)[f"{d}.jsonl"].epsilon == float("inf") for d in took_part)


@pytest.fixture(scope="module")
def secagg_sampled_run(tmp_path_factory):
    # 48 phones: at q = 0.5 a round samples fewer than SecAgg+'s 3 with probability
    # 4e-12, which the run pays in delta; 9 phones (p = 0.09) would be refused.
    return _simulate(
        tmp_path_factory.mktemp("cross-device-secagg"),
        *("--cohort-subjects", str(PHONES + 3), "--secagg", "--secagg-num-shares", "3"),
        *("--secagg-reconstruction-threshold", "2"),
    )


def test_sampled_devices_under_secagg_keep_a_finite_epsilon_against_the_coordinator(
    secagg_sampled_run,
):
    """Distributed noise with Poisson device sampling: the amplified figure holds against
    those who see only the models; against the coordinator, which draws the sample but
    unmasks only the noised sum, the same releases without amplification."""
    from common.privacy.audit_report import person_levels
    from common.privacy.distributed_noise import SkellamRelease, skellam_epsilon
    from common.privacy.key_registry import KeyRegistry
    from common.privacy.ledger_audit import audit_chain

    out, results = secagg_sampled_run
    releases = _releases(out)
    assert len(releases) == 3
    assert {(e["mechanism"], e["q"]) for e in releases} == {("dp-fedavg-skellam", RATE)}
    parsed = [SkellamRelease.from_parameters(e["accountant"]) for e in releases]
    amplified = skellam_epsilon(parsed, 1e-5)
    unamplified = skellam_epsilon([r.unsampled() for r in parsed], 1e-5)
    assert amplified <= TARGET + 1e-6 and unamplified > amplified + 0.5
    # Never below what dp-accounting gives a Gaussian of the same σ and q.
    assert amplified >= ledger_rdp_epsilon(releases, 1e-5) * (1 - 1e-9)
    people = results["privacy"]["person_level"]
    took_part = {d for r in results["rounds"] for d in r["trained"]}
    assert took_part
    for device in took_part:
        assert people[device]["epsilon"] == pytest.approx(amplified, abs=1e-3)
        assert people[device]["against_coordinator"] == pytest.approx(unamplified, abs=1e-3)
    headline = results["privacy"]["headline"]
    assert "not the coordinator" in headline["against"] and "SecAgg+" in headline["against"]
    assert headline["against_coordinator_epsilon"] < float("inf")
    asked = [len(r["trained"]) + len(r["declined"]) + len(r["failed"]) for r in results["rounds"]]
    assert all(n <= PHONES for n in asked) and sum(asked) < 3 * PHONES
    # The auditor gets the same figures from the signed ledgers alone.
    registry = KeyRegistry.read(out / "registry.json")
    audits = [audit_chain(p, registry=registry) for p in sorted((out / "ledger").rglob("*.jsonl"))]
    assert all(a.ok for a in audits), [a.failures for a in audits]
    audited = person_levels(audits)
    for device in took_part:
        assert audited[f"{device}.jsonl"].epsilon == pytest.approx(amplified, abs=1e-3)
        assert audited[f"{device}.jsonl"].against_coordinator == pytest.approx(
            unamplified, abs=1e-3
        )
