"""Verify privacy ledgers: chain, signatures, and every epsilon, independently.

For each ledger file (one chain) the auditor checks, entry by entry:

* the line is exactly a ledger entry; ``seq`` counts from 0 with no gap
  (a deleted line shows up here); ``prev_hash`` is the hash of the previous
  entry; the signature is valid and made by the key the operator's registry
  binds to the entry's device (without a registry, by the chain's first key,
  which proves only consistency, not who signed); one device per chain, the
  one the file is named after; rounds strictly increase within a run;
* the claimed cumulative epsilon equals what ``dp-accounting`` RDP gives for
  the history the chain records (within ``rtol``), and is not below the tight
  PLD figure (a claim below it would under-report the spend);
* a refusal claims the epsilon spent before it, and spends nothing;
* no entry claims an epsilon above the budget it records, or a delta above
  the auditor's ``max_delta``.

What a single chain cannot show (a truncated tail, a replayed or missing
chain) is checked against the coordinator's signed run manifest by
:mod:`common.privacy.manifest_audit`. Every failure names the file, line,
seq, device and round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.privacy.distributed_noise import RELEASE_MECHANISM, SkellamRelease, skellam_epsilon
from common.privacy.independent import independent_pld_epsilon, independent_rdp_epsilon
from common.privacy.key_registry import KeyRegistry
from common.privacy.ledger import (
    GENESIS_HASH,
    LedgerError,
    decode_entry,
    entry_hash,
    history_of,
    signature_is_valid,
)

DEFAULT_RTOL = 1e-2
# The usual ceiling for δ: well below 1/n for any cohort fedmer serves (the
# default runs account at 1e-5). The auditor can set another (--max-delta).
DEFAULT_MAX_DELTA = 1e-4


@dataclass
class EntryCheck:
    line: int
    entry: dict[str, Any]
    rdp: float  # independent RDP epsilon for the history up to this entry
    pld: float


@dataclass
class ChainAudit:
    path: Path
    checks: list[EntryCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return str(self.checks[0].entry["device_id"]) if self.checks else self.path.stem

    @property
    def ok(self) -> bool:
        return not self.failures

    def spent(self) -> float:
        return float(self.checks[-1].entry["epsilon"]) if self.checks else 0.0

    def budget(self) -> float:
        return float(self.checks[-1].entry["budget"]) if self.checks else 0.0

    def mechanism(self) -> str:
        return str(self.checks[0].entry["mechanism"]) if self.checks else "?"


def audit_chain(
    path: Path,
    rtol: float = DEFAULT_RTOL,
    registry: KeyRegistry | None = None,
    max_delta: float = DEFAULT_MAX_DELTA,
) -> ChainAudit:
    audit = ChainAudit(Path(path))
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    previous: dict[str, Any] | None = None
    pinned_key: str | None = None
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            entry = decode_entry(line)
        except LedgerError as exc:
            audit.failures.append(f"{where}: {exc}")
            return audit  # nothing after an unreadable line can be chained
        where = (
            f"{path}:{number} (seq {entry['seq']}, device {entry['device_id']}, "
            f"round {entry['round']})"
        )
        expected_seq = 0 if previous is None else int(previous["seq"]) + 1
        if previous is None and entry["seq"] != 0:
            audit.failures.append(
                f"{where}: the chain starts at seq {entry['seq']}: its earlier entries (an "
                "earlier run's, or deleted) are not here, so its epsilon cannot be recomputed"
            )
        elif entry["seq"] != expected_seq:
            audit.failures.append(
                f"{where}: seq {entry['seq']} where {expected_seq} was expected "
                "(an entry was deleted or reordered)"
            )
        expected_prev = GENESIS_HASH if previous is None else entry_hash(previous)
        if entry["prev_hash"] != expected_prev:
            audit.failures.append(f"{where}: prev_hash does not match the previous entry")
        if registry is not None:
            problem = _key_problem(entry, registry)
            if problem:
                audit.failures.append(f"{where}: {problem}")
        else:
            pinned_key = pinned_key or entry["public_key"]
            if entry["public_key"] != pinned_key:
                audit.failures.append(f"{where}: signed by a different key than the chain's")
        if not signature_is_valid(entry):
            audit.failures.append(f"{where}: signature invalid (the entry was altered)")
        if previous is not None and entry["device_id"] != previous["device_id"]:
            audit.failures.append(f"{where}: device id changed within one chain")
        if previous is None and not _named_after(path, str(entry["device_id"])):
            audit.failures.append(
                f"{where}: the chain of device {entry['device_id']!r} is filed as {path.name}"
            )
        if (
            previous is not None
            and entry["run_id"] == previous["run_id"]
            and int(entry["round"]) <= int(previous["round"])
        ):
            audit.failures.append(
                f"{where}: round {entry['round']} after round {previous['round']} of the same run"
            )
        audit.failures.extend(f"{where}: {p}" for p in _limit_problems(entry, max_delta))

        checked = [c.entry for c in audit.checks] + [entry]
        history = history_of(checked)
        delta = float(entry["delta"])
        check = EntryCheck(
            number,
            entry,
            independent_rdp_epsilon(history, delta),
            independent_pld_epsilon(history, delta),
        )
        audit.failures.extend(
            f"{where}: {p}" for p in _epsilon_problems(entry, check, previous, rtol, checked)
        )
        audit.checks.append(check)
        previous = entry
    return audit


def _key_problem(entry: Mapping[str, Any], registry: KeyRegistry) -> str | None:
    device, key = str(entry["device_id"]), str(entry["public_key"])
    expected = (
        registry.coordinator_public_key if device == "server" else registry.ledger_key(device)
    )
    if expected is None:
        return f"device {device!r} is not in the key registry"
    if key != expected:
        owner = registry.owner_of(key)
        whose = f"the key registered to {owner!r}" if owner else "a key not in the registry"
        return f"signed by {whose}, not the key registered for {device!r}"
    return None


def _named_after(path: Path, device_id: str) -> bool:
    """The coordinator files a device's copy as ``devices/<id>.jsonl`` and its own chain as
    ``server.jsonl``; a device's own ledger (``privacy_ledger.jsonl``) may hold any device."""
    if path.parent.name == "devices":
        return path.stem == re.sub(r"[^A-Za-z0-9_.-]", "_", device_id)
    if path.stem == "server":
        return device_id == "server"
    return True


def _limit_problems(entry: Mapping[str, Any], max_delta: float) -> list[str]:
    problems = []
    epsilon, budget, delta = float(entry["epsilon"]), float(entry["budget"]), float(entry["delta"])
    if (
        entry["event"] not in ("refused", "restored")
        and budget > 0
        and epsilon > budget * (1 + 1e-9)
    ):
        problems.append(f"epsilon {epsilon:.6g} exceeds the budget {budget:g} it records")
    if delta > max_delta:
        problems.append(f"delta {delta:g} exceeds the largest acceptable delta {max_delta:g}")
    return problems


def _epsilon_problems(
    entry: Mapping[str, Any],
    check: EntryCheck,
    previous: Mapping[str, Any] | None,
    rtol: float,
    chain: list[dict[str, Any]],
) -> list[str]:
    problems = []
    claimed = float(entry["epsilon"])
    if entry["event"] in ("refused", "restored"):
        # Neither spends: a refusal, or the mark of a ledger restored after a loss,
        # whose ε must be the chain's as it was, never a fresh start.
        what = "a refusal" if entry["event"] == "refused" else "a restore mark"
        before = float(previous["epsilon"]) if previous is not None else 0.0
        if entry["event"] == "restored" and previous is None:
            problems.append("a restore mark cannot open a chain: the restored entries are missing")
        if int(entry["steps"]) != 0:
            problems.append(f"{what} must not spend steps")
        if not _close(claimed, before, 1e-12):
            problems.append(
                f"{what} claims epsilon {claimed:.6g}, but {before:.6g} was spent before it"
            )
        return problems
    if entry["mechanism"] == RELEASE_MECHANISM and "variance=" in str(entry["accountant"]):
        return _skellam_problems(entry, check, rtol, chain)
    if not _close(claimed, check.rdp, rtol):
        problems.append(
            f"claimed epsilon {claimed:.6g} but dp-accounting RDP gives {check.rdp:.6g} "
            f"(relative tolerance {rtol:g})"
        )
    if claimed < check.pld * (1 - rtol):
        problems.append(
            f"claimed epsilon {claimed:.6g} is below the tight PLD figure {check.pld:.6g}"
        )
    return problems


def _skellam_problems(
    entry: Mapping[str, Any], check: EntryCheck, rtol: float, chain: list[dict[str, Any]]
) -> list[str]:
    """A distributed-noise release, recomputed from the parameters its entry carries.

    dp-accounting has no Skellam mechanism (nor a subsampled one), so the
    figure is recomputed with Agarwal et al.'s Theorem 3.5 (and Zhu & Wang's
    general subsampling bound when q < 1); dp-accounting's Gaussian at the
    entry's σ and q is the floor the claim may never go below.
    """
    problems = []
    claimed = float(entry["epsilon"])
    try:
        releases = [
            SkellamRelease.from_parameters(str(e["accountant"]))
            for e in chain
            if e["mechanism"] == RELEASE_MECHANISM and e["event"] == "release"
        ]
    except ValueError as exc:
        return [str(exc)]
    mine = releases[-1]
    if not _close(float(entry["sigma"]), mine.effective_noise_multiplier, 1e-9):
        problems.append(
            f"sigma {float(entry['sigma']):.6g} is not the Gaussian-equivalent "
            f"{mine.effective_noise_multiplier:.6g} of the Skellam parameters it carries"
        )
    if not _close(float(entry["q"]), mine.q, 1e-12):
        problems.append(f"q {entry['q']} differs from the q={mine.q} its parameters carry")
    recomputed = skellam_epsilon(releases, float(entry["delta"]))
    if not _close(claimed, recomputed, rtol):
        problems.append(
            f"claimed epsilon {claimed:.6g} but the Skellam accountant gives {recomputed:.6g} "
            f"from the entries' parameters (relative tolerance {rtol:g})"
        )
    if claimed < max(check.rdp, check.pld) * (1 - rtol):
        problems.append(
            f"claimed epsilon {claimed:.6g} is below dp-accounting's "
            f"{max(check.rdp, check.pld):.6g} for a Gaussian of the same sigma and q"
        )
    return problems


def _close(a: float, b: float, rtol: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(b), 1e-12)
