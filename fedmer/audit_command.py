"""``fedmer audit``: verify privacy ledgers, or run the empirical privacy audit.

``fedmer audit LEDGER...`` checks each ledger's hash chain and Ed25519
signatures, recomputes every epsilon with dp-accounting (RDP and PLD),
prints per-device and global budgets, and writes a Markdown report with
epsilon-vs-round plots. It exits with status 1 if anything fails, naming the
entry. A directory argument means every ``*.jsonl`` below it.

``fedmer audit --empirical`` trains with canaries (one-run audit of Steinke,
Nasr & Jagielski, 2023) at the claimed epsilon and without DP, and reports
the empirical epsilon lower bound next to the claim.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "audit",
        help="verify privacy ledgers (chain, signatures, epsilon) or run an empirical audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "ledgers",
        nargs="*",
        type=Path,
        metavar="LEDGER",
        help="ledger JSONL files, or folders holding them (e.g. runs/<id>/ledger)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=Path("audit-report"),
        help="folder for the Markdown report and plots (default: audit-report)",
    )
    p.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="relative tolerance for recomputed epsilon (default 1e-2)",
    )
    p.add_argument(
        "--clips-per-subject",
        type=int,
        default=10,
        help="k for the sample-to-subject group-privacy conversion (default 10)",
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="DEVICE=BASE64",
        help="pin a device's Ed25519 public key (else the chain's first entry pins it)",
    )
    p.add_argument(
        "--empirical",
        action="store_true",
        help="run the one-run empirical audit (canaries + membership inference)",
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=8.0,
        help="--empirical: the claimed epsilon to train at (default 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="--empirical: seed")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.empirical:
        return _empirical(args)
    if not args.ledgers:
        print("fedmer audit: give at least one LEDGER (or --empirical)")
        return 2
    from common.privacy.audit_report import budget_lines, write_report
    from common.privacy.ledger_audit import DEFAULT_RTOL, audit_chain

    rtol = args.rtol if args.rtol is not None else DEFAULT_RTOL
    trusted = dict(item.split("=", 1) for item in args.trusted_key)
    paths = _ledger_files(args.ledgers)
    if not paths:
        print("fedmer audit: no ledger files found")
        return 2
    audits = [audit_chain(p, rtol, trusted) for p in paths]
    for line in budget_lines(audits):
        print(line)
    report = write_report(audits, args.report, args.clips_per_subject, rtol)
    failures = [f for a in audits for f in a.failures]
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"report: {report}")
    return 1 if failures else 0


def _ledger_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        files.extend(sorted(path.rglob("*.jsonl")) if path.is_dir() else [path])
    return files


def _empirical(args: argparse.Namespace) -> int:
    from simulations.empirical_audit import EmpiricalAuditConfig, run_empirical_audit

    results = {}
    for label, epsilon in (("dp", args.epsilon), ("non-dp baseline", 0.0)):
        result = run_empirical_audit(EmpiricalAuditConfig(target_epsilon=epsilon, seed=args.seed))
        results[label] = result.as_dict()
        print(
            f"{label:>16}: claimed ε={result.claimed_epsilon:.3f}  empirical lower bound "
            f"ε≥{result.epsilon_lower_bound:.3f} ({result.confidence:.0%} confidence, "
            f"{result.correct_guesses}/{result.guesses} guesses correct)  "
            f"AUC {result.auc:.3f}  TPR@FPR=1e-3 {result.tpr_at_fpr_1e3:.3f}"
        )
    args.report.mkdir(parents=True, exist_ok=True)
    out = args.report / "empirical_audit.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    dp = results["dp"]
    # A lower bound above the claim means the claim is wrong (or the test is broken).
    return 1 if dp["epsilon_lower_bound"] > dp["claimed_epsilon"] else 0
