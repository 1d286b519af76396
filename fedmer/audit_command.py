"""``fedmer audit``: verify privacy ledgers, or run the empirical privacy audit.

``fedmer audit LEDGER...`` checks each ledger's hash chain and Ed25519
signatures against the operator's key registry, recomputes every epsilon with
dp-accounting (RDP and PLD), holds every entry to its budget and to
``--max-delta``, checks the ledgers against the coordinator's signed run
manifest (truncation, replay, missing devices, nonces), prints per-device and
global budgets, and writes a Markdown report with epsilon-vs-round plots. It
exits with status 1 if anything fails, naming the entry or the device. A
directory argument means every ``*.jsonl`` below it; its ``manifest.json`` is
the manifest, and ``registry.json`` beside the folder the registry, unless
given. Without a registry pinned by ``--operator-key``, or without a manifest,
the audit says what it cannot detect and fails unless ``--partial``.

``fedmer audit --empirical LEDGER`` audits the mechanism a device's chain
records (its σ, q, steps per round, rounds and δ; the device with the largest
claim unless ``--device``) empirically, in the coordinator's white-box view:
fedmer's own DP-SGD with gradient canaries, every round's update seen. It
prints the lower bounds on ε (one-run, with its ceiling, and Gaussian-DP fit)
and exits 1 when they exceed the claimed ε.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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
    p.add_argument("--registry", type=Path, help="the operator's signed key registry")
    p.add_argument(
        "--operator-key",
        metavar="BASE64",
        help="the operator's public key, obtained out of band: the registry must be signed by it",
    )
    p.add_argument("--manifest", type=Path, help="the coordinator's signed run manifest")
    p.add_argument(
        "--max-delta",
        type=float,
        default=None,
        help="fail any entry whose delta is larger (default 1e-4)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="accept an audit without registry or manifest (what it cannot detect is printed)",
    )
    p.add_argument(
        "--empirical",
        action="store_true",
        help="empirically audit the DP-SGD setting a device's chain records (white-box canaries)",
    )
    p.add_argument("--device", help="--empirical: the device whose setting to audit")
    p.add_argument("--canaries", type=int, default=4000, help="--empirical: canaries (4000)")
    p.add_argument(
        "--applied-noise-fraction",
        type=float,
        default=1.0,
        help="--empirical, for testing the audit: a broken device that applies this fraction "
        "of the σ it records (default 1: the mechanism as recorded)",
    )
    p.add_argument("--seed", type=int, default=0, help="--empirical: seed of the canary draw")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.ledgers:
        print("fedmer audit: give at least one LEDGER")
        return 2
    if args.empirical:
        return _empirical(args)
    from common.privacy.audit_report import budget_lines, person_levels, write_report
    from common.privacy.ledger_audit import DEFAULT_MAX_DELTA, DEFAULT_RTOL, audit_chain
    from common.privacy.manifest_audit import manifest_problems, missing_inputs

    rtol = args.rtol if args.rtol is not None else DEFAULT_RTOL
    max_delta = args.max_delta if args.max_delta is not None else DEFAULT_MAX_DELTA
    paths = _ledger_files(args.ledgers)
    if not paths:
        print("fedmer audit: no ledger files found")
        return 2
    try:
        registry, manifest, root, gaps = _trust_inputs(args)
    except ValueError as exc:
        print(f"FAILED {exc}")
        return 1
    audits = [audit_chain(p, rtol, registry, max_delta) for p in paths]
    people = person_levels(audits)
    if people:
        from common.privacy.person_level import narrowest

        name, worst = max(people.items(), key=lambda kv: kv[1].epsilon)
        against = narrowest([p.against for p in people.values()])
        coordinator = max(float(p.against_coordinator or 0.0) for p in people.values())
        print(
            f"person-level ε (worst subject): {worst.epsilon:.4f} at δ={worst.delta:g} "
            f"({name}; against {against}; against the coordinator: {coordinator:.4f})"
        )
    for line in budget_lines(audits):
        print(line)
    run_failures = manifest_problems(manifest, root, paths) if manifest is not None else []
    gaps += missing_inputs(registry, manifest)
    report = write_report(audits, args.report, args.clips_per_subject, rtol, run_failures, gaps)
    failures = [f for a in audits for f in a.failures] + run_failures
    for failure in failures:
        print(f"FAILED {failure}")
    for gap in gaps:
        print(f"{'NOTE' if args.partial else 'FAILED'} cannot check: {gap}")
    print(f"report: {report}")
    return 1 if failures or (gaps and not args.partial) else 0


def _trust_inputs(args: argparse.Namespace) -> tuple[Any, Any, Path, list[str]]:
    """The registry, the manifest and the ledger root to check against (defaults from
    the folder given), and what cannot be checked; ValueError when a given one fails."""
    from common.privacy.key_registry import KeyRegistry
    from common.privacy.manifest_audit import MANIFEST_FILE, read_manifest
    from common.privacy.signed_document import DocumentError

    folder = next((p for p in args.ledgers if p.is_dir()), None)
    manifest_path = args.manifest or (folder / MANIFEST_FILE if folder else None)
    registry_path = args.registry or (folder.parent / "registry.json" if folder else None)
    gaps: list[str] = []
    registry = manifest = None
    try:
        if registry_path is not None and registry_path.is_file():
            registry = KeyRegistry.read(registry_path, args.operator_key)
            if args.operator_key is None:
                gaps.append(
                    f"the registry {registry_path} is signed by {registry.operator_public_key}, "
                    "but no --operator-key says that is the operator's key"
                )
        elif args.registry is not None:
            raise ValueError(f"{args.registry}: no such registry")
        if manifest_path is not None and manifest_path.is_file():
            manifest = read_manifest(manifest_path, registry)
        elif args.manifest is not None:
            raise ValueError(f"{args.manifest}: no such manifest")
    except DocumentError as exc:
        raise ValueError(str(exc)) from None
    root = manifest_path.parent if manifest_path is not None else Path(".")
    return registry, manifest, root, gaps


def _ledger_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        files.extend(sorted(path.rglob("*.jsonl")) if path.is_dir() else [path])
    return files


def _empirical(args: argparse.Namespace) -> int:
    from common.privacy.ledger import LedgerError, decode_entry
    from simulations.white_box_audit import (
        DeployedSetting,
        WhiteBoxAuditConfig,
        describe,
        run_white_box_audit,
    )

    settings = []
    for path in _ledger_files(args.ledgers):
        try:
            entries = [decode_entry(line) for line in path.read_text().splitlines() if line]
            settings.append(DeployedSetting.from_entries(entries))
        except (LedgerError, ValueError):
            continue  # not a DP-SGD chain (the server's, a held-out device's)
    if args.device:
        settings = [s for s in settings if s.device_id == args.device]
    if not settings:
        print("fedmer audit --empirical: no DP-SGD device chain among the LEDGERs given")
        return 2
    setting = max(settings, key=lambda s: s.claimed_epsilon)
    config = WhiteBoxAuditConfig(
        canaries=args.canaries,
        guesses=max(1, args.canaries // 4),
        applied_noise_fraction=args.applied_noise_fraction,
        seed=args.seed,
    )
    result = run_white_box_audit(setting, config)
    label = "broken mechanism" if args.applied_noise_fraction < 1 else "deployed mechanism"
    print(describe(result, label))
    args.report.mkdir(parents=True, exist_ok=True)
    out = args.report / "empirical_audit.json"
    out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    print(f"results: {out}")
    return 1 if result.refutes_claim else 0
