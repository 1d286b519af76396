"""``fedmer audit`` as a privacy officer uses it: on a real run, honest and tampered.

One 3-round ``fedmer simulate`` run (in-process transport) gives honest
ledgers, a signed run manifest and the operator's signed key registry. Each
tamper case copies them, makes one change an attacker (or a careless
operator) could make, and expects the audit to exit non-zero with a message
naming the entry or the device. The honest copy must pass, and no device's
private key may appear anywhere but in that device's own state directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.privacy.ledger import canonical_bytes, entry_hash, load_private_key, public_key_b64
from tests.scenarios import CLIP_LEVEL_FLAGS

ROUNDS = 3


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-trust")
    env = dict(os.environ, FEDMER_CACHE=str(root / "cache"))
    out = root / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "simulate", "--transport", "in-process",
         *CLIP_LEVEL_FLAGS, "--cohort-subjects", "4", "--num-heldout-subjects", "1", "--cohort-clips-per-class",
         "3", "--num-server-rounds", str(ROUNDS), "--batch-size", "4", "--out-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    registry = json.loads((out / "registry.json").read_text())
    return out, registry["signed_by"]


def _audit(folder: Path, operator: str | None, *extra: str) -> tuple[int, str]:
    args = [sys.executable, "-m", "fedmer.cli", "audit", str(folder / "ledger"),
            "--report", str(folder / "report"), *extra]  # fmt: skip
    if operator is not None:
        args += ["--operator-key", operator]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run / "ledger", dest / "ledger")
    shutil.copy(run / "registry.json", dest / "registry.json")
    return dest


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def _resign(entries: list[dict], key: Ed25519PrivateKey) -> list[dict]:
    """Re-chain and re-sign entries with ``key``: what a holder of that key can do."""
    previous = None
    for seq, e in enumerate(entries):
        e["seq"] = seq
        e["prev_hash"] = entry_hash(previous) if previous else "0" * 64
        e["public_key"] = public_key_b64(key)
        e["signature"] = base64.b64encode(key.sign(canonical_bytes(e))).decode()
        previous = e
    return entries


def _device_key(run: Path, device: str) -> Ed25519PrivateKey:
    for node in (run / "devices").glob("partition-*/node-config.json"):
        config = json.loads(node.read_text())
        if config.get("device-id") == device:
            pem = Path(config["state-dir"]) / "device_ed25519.pem"
            return load_private_key(pem.read_bytes())
    raise AssertionError(f"no simulated device {device}")


TRAINER, OTHER = "sim-000", "sim-001"


def _truncate(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    _write(path, _lines(path)[:-1])
    return "truncated, extended or replaced"


def _fresh_key(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    _write(path, _resign(_lines(path), Ed25519PrivateKey.generate()))
    return f"signed by a key not in the registry, not the key registered for '{TRAINER}'"


def _renamed(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    for e in entries:
        e["device_id"] = "sim-999"
    path.unlink()
    _write(path.with_name("sim-999.jsonl"), _resign(entries, Ed25519PrivateKey.generate()))
    return "device 'sim-999' is not in the key registry"


def _filed_under_other(run: Path, d: Path) -> str:
    devices = d / "ledger" / "devices"
    shutil.copy(devices / f"{TRAINER}.jsonl", devices / f"{OTHER}.jsonl")
    return f"the chain of device '{TRAINER}' is filed as {OTHER}.jsonl"


def _deleted(run: Path, d: Path) -> str:
    (d / "ledger" / "devices" / f"{TRAINER}.jsonl").unlink()
    return f"device '{TRAINER}': its ledger devices/{TRAINER}.jsonl is missing"


def _replayed(run: Path, d: Path) -> str:
    # The device's own key re-signs its chain as if from another run: what a replay
    # of an old run's (validly signed) chain looks like.
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    for e in entries:
        e["run_id"], e["nonce"] = "1234", "00" * 16
    _write(path, _resign(entries, _device_key(run, TRAINER)))
    return "not of this run"


def _over_budget(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    for e in entries:
        e["budget"] = 1.0
    _write(path, _resign(entries, _device_key(run, TRAINER)))
    return "exceeds the budget 1 it records"


def _large_delta(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    for e in entries:
        e["delta"] = 0.2
    _write(path, _resign(entries, _device_key(run, TRAINER)))
    return "delta 0.2 exceeds the largest acceptable delta"


def _reordered(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    entries[0], entries[1] = entries[1], entries[0]
    _write(path, entries)
    return "the chain starts at seq 1"


def _spliced(run: Path, d: Path) -> str:
    devices = d / "ledger" / "devices"
    mine, other = _lines(devices / f"{TRAINER}.jsonl"), _lines(devices / f"{OTHER}.jsonl")
    _write(devices / f"{TRAINER}.jsonl", mine[:1] + other[1:])
    return "prev_hash does not match the previous entry"


def _edited_sigma(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    entries[1]["sigma"] = float(entries[1]["sigma"]) * 2
    _write(path, entries)
    return "(seq 1, device sim-000, round 2): signature invalid"


def _edited_q(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    entries[2]["q"] = float(entries[2]["q"]) / 2
    _write(path, entries)
    return "(seq 2, device sim-000, round 3): signature invalid"


def _foreign_entry(run: Path, d: Path) -> str:
    path = d / "ledger" / "devices" / f"{TRAINER}.jsonl"
    entries = _lines(path)
    stranger = Ed25519PrivateKey.generate()
    entries[2]["public_key"] = public_key_b64(stranger)
    entries[2]["signature"] = base64.b64encode(stranger.sign(canonical_bytes(entries[2]))).decode()
    _write(path, entries)
    return "(seq 2, device sim-000, round 3): signed by a key not in the registry"


def _forged_manifest(run: Path, d: Path) -> str:
    path = d / "ledger" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["devices"][TRAINER]["entries"] -= 1
    path.write_text(json.dumps(manifest))
    return "signature invalid (the fedmer-run-manifest was altered)"


def _forged_registry(run: Path, d: Path) -> str:
    # A registry re-signed by someone else: the auditor's --operator-key does not match.
    from common.privacy.key_registry import Enrolment, build_registry

    registry = json.loads((d / "registry.json").read_text())
    enrolments = [Enrolment(**item) for item in registry["devices"]]
    forged = build_registry(
        enrolments, registry["coordinator_public_key"], Ed25519PrivateKey.generate()
    )
    (d / "registry.json").write_text(json.dumps(forged))
    return "not by the trusted key"


TAMPERS: dict[str, Callable[[Path, Path], str]] = {
    "truncated-chain": _truncate,
    "chain-re-signed-with-fresh-key": _fresh_key,
    "renamed-device": _renamed,
    "chain-filed-under-another-device": _filed_under_other,
    "device-file-deleted": _deleted,
    "chain-replayed-from-another-run": _replayed,
    "epsilon-over-budget": _over_budget,
    "delta-0.2": _large_delta,
    "two-entries-reordered": _reordered,
    "two-devices-spliced": _spliced,
    "sigma-edited": _edited_sigma,
    "q-edited": _edited_q,
    "entry-signed-by-unregistered-key": _foreign_entry,
    "manifest-edited": _forged_manifest,
    "registry-signed-by-someone-else": _forged_registry,
}


def test_the_honest_run_passes_with_registry_and_manifest(honest_run, tmp_path):
    run, operator = honest_run
    code, out = _audit(_copy(run, tmp_path), operator)
    assert code == 0, out
    assert "FAILED" not in out and "cannot check" not in out


def test_without_the_operator_key_the_audit_says_what_it_cannot_check(honest_run, tmp_path):
    run, _ = honest_run
    folder = _copy(run, tmp_path)
    code, out = _audit(folder, None)
    assert code == 1 and "no --operator-key says that is the operator's key" in out
    (folder / "registry.json").unlink()
    (folder / "ledger" / "manifest.json").unlink()
    code, out = _audit(folder, None)
    assert code == 1
    assert "no key registry" in out and "no run manifest" in out
    code, out = _audit(folder, None, "--partial")
    assert code == 0 and "NOTE cannot check: no run manifest" in out


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_every_tamper_fails_the_audit_naming_what(honest_run, tmp_path, name):
    run, operator = honest_run
    folder = _copy(run, tmp_path)
    expected = TAMPERS[name](run, folder)
    code, out = _audit(folder, operator)
    assert code == 1, out
    assert expected in out, out


def test_every_training_device_keeps_the_coordinators_receipts(honest_run):
    run, _ = honest_run
    for state in (run / "devices").glob("partition-*/state"):
        ledger = _lines(state / "privacy_ledger.jsonl")
        receipts = _lines(state / "receipts.jsonl")
        # Rounds 2 and 3 each bring the receipt of the head after the round before
        # (a random start is not scored, so there is no round 0 release).
        assert [r["head_seq"] for r in receipts] == [0, 1], state
        assert all(r["head_hash"] == entry_hash(ledger[r["head_seq"]]) for r in receipts)
        assert (state / "coordinator.pub").read_text().strip() == receipts[0]["signed_by"]


def test_no_device_private_key_outside_its_state_dir(honest_run):
    run, _ = honest_run
    keys = {}
    for pem in (run / "devices").glob("partition-*/state/device_ed25519.pem"):
        keys[pem] = pem.read_bytes()
    assert len(keys) == 4
    raw = [load_private_key(k).private_bytes_raw() for k in keys.values()]
    for path in run.rglob("*"):
        if not path.is_file() or path in keys:
            continue
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, f"{path} holds a private key"
        for secret in raw:
            assert secret not in data and base64.b64encode(secret) not in data, path
    # The coordinator's and the operator's keys are outside the run folder.
    for env in ("FEDMER_COORDINATOR_KEY", "FEDMER_OPERATOR_KEY"):
        key = Path(os.environ[env])
        assert key.is_file() and run not in key.parents


@pytest.mark.parametrize("fraction,code", [(1.0, 0), (0.25, 1)], ids=["honest", "quarter-noise"])
def test_the_empirical_audit_of_the_deployed_setting_can_fail(honest_run, tmp_path, fraction, code):
    run, _ = honest_run
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "audit", "--empirical", str(run / "ledger"),
         "--canaries", "2000", "--applied-noise-fraction", str(fraction),
         "--report", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "empirical_audit.json").read_text())
    # The audit reproduces the run's own recorded setting, not one of its own.
    assert result["setting"]["rounds"] == ROUNDS
    assert result["recomputed_epsilon"] == pytest.approx(
        result["setting"]["claimed_epsilon"], rel=1e-2
    )
    assert ("REFUTES the claim" in proc.stdout) == (code == 1)
