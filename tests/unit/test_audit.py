"""``fedmer audit`` on ledgers written by the real Ledger class, intact and tampered."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.privacy.accounting import epsilon_rdp
from common.privacy.ledger import FileLines, Ledger, canonical_bytes, entry_hash, history_of
from fedmer.cli import main
from tests.independent_accountant import rdp_epsilon

# (sigma, q, steps per round, rounds): small q, where Opacus and dp-accounting
# RDP agree to < 1e-4. The first is the vector: 2250 steps -> 7.329.
VECTORS = [(1.5, 0.04, 450, 5), (1.1, 0.01, 2000, 5), (3.0, 0.1, 100, 5)]


def _write_device_ledger(path, sigma, q, steps, rounds, budget=0.0, key=None):
    ledger = Ledger(FileLines(path), key or Ed25519PrivateKey.generate())
    for server_round in range(1, rounds + 1):
        history = history_of(ledger.entries()) + [(sigma, q, steps)]
        ledger.append(
            round=server_round,
            device_id=path.stem,
            event="train",
            mechanism="dp-sgd",
            sigma=sigma,
            q=q,
            steps=steps,
            delta=1e-5,
            epsilon=epsilon_rdp(history, 1e-5),
            budget=budget,
            accountant="rdp",
            note="",
        )
    return ledger


@pytest.mark.parametrize("sigma,q,steps,rounds", VECTORS)
def test_ledger_epsilon_matches_dp_accounting_within_1e3(tmp_path, sigma, q, steps, rounds):
    ledger = _write_device_ledger(tmp_path / "dev.jsonl", sigma, q, steps, rounds)
    final = ledger.entries()[-1]["epsilon"]
    independent = rdp_epsilon([(sigma, q, steps * rounds)], 1e-5)
    assert final == pytest.approx(independent, rel=1e-3)
    if (sigma, q, steps * rounds) == (1.5, 0.04, 2250):
        assert final == pytest.approx(7.329, abs=1e-3)
    assert (
        main(["audit", str(tmp_path / "dev.jsonl"), "--partial", "--report", str(tmp_path / "r")])
        == 0
    )


def test_audit_reports_budgets_and_writes_plots(tmp_path, capsys):
    _write_device_ledger(tmp_path / "dev-a.jsonl", 1.5, 0.04, 450, 5, budget=10.0)
    assert main(["audit", str(tmp_path), "--partial", "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "dev-a" in out and "spent ε=7.3291" in out and "remaining 2.6709" in out
    report = (tmp_path / "r" / "audit_report.md").read_text()
    assert "all ledgers verified" in report and "subject-level" in report
    assert (tmp_path / "r" / "epsilon_dev-a_dev-a.png").stat().st_size > 1000
    page = (tmp_path / "r" / "audit_report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "<table>" in page
    assert "dev-a" in page and 'src="epsilon' not in page  # embedded, not linked


def test_the_html_report_escapes_what_ledgers_contain(tmp_path):
    from common.privacy.report_page import markdown_page

    page = markdown_page(["# x", "| a | b |", "|---|---|", "| <script> | `c` |"], tmp_path, "t")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<code>c</code>" in page


def _tamper(path, line_no, **changes):
    lines = path.read_text().splitlines()
    entry = json.loads(lines[line_no - 1])
    entry.update(changes)
    lines[line_no - 1] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "tamper,expected",
    [
        (
            lambda p: _tamper(p, 3, epsilon=1.0),
            "dev.jsonl:3 (seq 2, device dev, round 3): signature invalid",
        ),
        (
            lambda p: _tamper(p, 2, sigma=9.0),
            "dev.jsonl:2 (seq 1, device dev, round 2): signature invalid",
        ),
        (
            lambda p: p.write_text(
                "".join(l + "\n" for i, l in enumerate(p.read_text().splitlines()) if i != 1)
            ),
            "dev.jsonl:2 (seq 2, device dev, round 3): seq 2 where 1 was expected",
        ),
    ],
    ids=["epsilon", "sigma", "deleted-line"],
)
def test_tampering_fails_the_audit_naming_the_entry(tmp_path, capsys, tamper, expected):
    path = tmp_path / "dev.jsonl"
    _write_device_ledger(path, 1.5, 0.04, 450, 5)
    tamper(path)
    assert main(["audit", str(path), "--partial", "--report", str(tmp_path / "r")]) == 1
    assert expected in capsys.readouterr().out


def test_a_re_signed_false_epsilon_is_caught_by_recomputation(tmp_path, capsys):
    # Someone holding the key rewrites the chain with an understated epsilon:
    # signatures and hashes are valid, the arithmetic is not.
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "dev.jsonl"
    ledger = _write_device_ledger(path, 1.5, 0.04, 450, 2, key=key)
    entries = ledger.entries()
    entries[1]["epsilon"] = 3.0
    entries[1]["signature"] = base64.b64encode(key.sign(canonical_bytes(entries[1]))).decode()
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert entries[1]["prev_hash"] == entry_hash(entries[0])
    assert main(["audit", str(path), "--partial", "--report", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "dev.jsonl:2 (seq 1, device dev, round 2): claimed epsilon 3" in out
    assert "below the tight PLD figure" in out


def test_coordinator_receipts_are_checked_and_kept_by_the_device(tmp_path):
    from client.receipts import RECEIPTS_FILE, receipt_problem
    from server.privacy_ledger import ServerLedger

    device = tmp_path / "device"
    ledger = _write_device_ledger(device / "dev.jsonl", 1.5, 0.04, 450, 2)
    server = ServerLedger(tmp_path / "run", key_path=tmp_path / "coordinator.pem")
    for line in (device / "dev.jsonl").read_text().splitlines():
        server.keep_device_entry("dev", line)
    receipt = server.receipt_for("dev", "run-1")
    assert receipt_problem(device, ledger, "dev", receipt) is None
    kept = [json.loads(line) for line in (device / RECEIPTS_FILE).read_text().splitlines()]
    assert kept[0]["head_seq"] == 1 and kept[0]["run_id"] == "run-1"
    # Another coordinator key than the one pinned by the first receipt is refused.
    other = ServerLedger(tmp_path / "run2", key_path=tmp_path / "other.pem")
    for line in (device / "dev.jsonl").read_text().splitlines():
        other.keep_device_entry("dev", line)
    problem = receipt_problem(device, ledger, "dev", other.receipt_for("dev", "run-1"))
    assert problem and "not by the trusted key" in problem
    # A receipt of a head the device never wrote (a forged or foreign chain) is refused.
    forged = json.loads(receipt)
    forged["head_seq"] = 5
    problem = receipt_problem(device, ledger, "dev", json.dumps(forged))
    assert problem and "signature invalid" in problem
    assert "is for device 'dev'" in receipt_problem(device, ledger, "someone", receipt)
    assert len((device / RECEIPTS_FILE).read_text().splitlines()) == 1


def test_the_coordinator_key_may_not_live_in_the_run_folder(tmp_path):
    from server.privacy_ledger import ServerLedger

    with pytest.raises(ValueError, match="must not live in the run folder"):
        ServerLedger(tmp_path / "run", key_path=tmp_path / "run" / "ledger" / "key.pem")
