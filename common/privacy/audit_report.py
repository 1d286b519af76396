"""The auditor's report: budgets in plain text, a Markdown report, PNG plots."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from common.privacy.group_privacy import subject_level
from common.privacy.ledger import history_of
from common.privacy.ledger_audit import ChainAudit
from common.privacy.person_level import (
    CLIENT_LEVEL_MECHANISMS,
    PersonLevel,
    client_level,
    device_guarantee,
    narrowest,
)
from common.privacy.report_page import markdown_page

REPORT_FILE = "audit_report.md"
HTML_REPORT_FILE = "audit_report.html"


def budget_lines(audits: Sequence[ChainAudit]) -> list[str]:
    """Per-chain and global budgets, spent and remaining."""
    lines = []
    for audit in audits:
        lines.append(
            f"{audit.owner:<20} {audit.mechanism():<10} spent ε={_fmt(audit.spent())}  "
            f"budget {_budget(audit.budget())}  remaining {_remaining(audit)}  "
            f"[{'OK' if audit.ok else 'FAILED'}]"
        )
    for mechanism, label in (
        ("dp-sgd", "sample-level (worst device)"),
        ("dp-sgd-subject", "person-level, user-level DP-SGD (worst device)"),
        ("dp-fedavg", "client-level, central noise"),
        ("dp-fedavg-skellam", "client-level, distributed noise"),
    ):
        chains = [a for a in audits if a.mechanism() == mechanism]
        if chains:
            worst = max(chains, key=lambda a: a.spent())
            lines.append(
                f"global {label}: ε={_fmt(worst.spent())} ({worst.owner}), "
                f"remaining {_remaining(worst)}"
            )
    return lines


def person_levels(audits: Sequence[ChainAudit]) -> dict[str, PersonLevel]:
    """Each device chain's person-level (ε, δ), recomputed from its entries' (σ, q, steps).

    A device whose chain trained also counts the coordinator's client-level
    releases, from the server chain: they protect every subject of a device.
    """
    server = [c.entry for a in audits if a.mechanism() in CLIENT_LEVEL_MECHANISMS for c in a.checks]
    people = {}
    for audit in audits:
        if not audit.checks or audit.mechanism() in CLIENT_LEVEL_MECHANISMS:
            continue
        entries = [c.entry for c in audit.checks]
        delta = float(entries[-1]["delta"])
        people[audit.path.name] = device_guarantee(entries, client_level(server, delta), delta)
    return people


def person_headline_lines(people: dict[str, PersonLevel]) -> list[str]:
    """The audit's first figure: the worst person-level ε, and against whom it holds."""
    if not people:
        return []
    name, worst = max(people.items(), key=lambda kv: kv[1].epsilon)
    against = narrowest([p.against for p in people.values()])
    coordinator = max(float(p.against_coordinator or 0.0) for p in people.values())
    return [
        f"**Person-level ε (worst subject): {_fmt(worst.epsilon)} at δ = {worst.delta:g}** "
        f"(`{name}`, {', '.join(worst.mechanisms)}), holding against {against}; "
        f"against the coordinator: {_fmt(coordinator)}. "
        "Finite only where every spend of a device protects a whole subject "
        "(dp-sgd-subject, gaussian-counts-subject); clip-level spends give ∞ here and "
        "a group-privacy figure in the table.",
        "",
    ]


def write_report(
    audits: Sequence[ChainAudit],
    out_dir: Path,
    clips_per_subject: int,
    rtol: float,
    run_failures: Sequence[str] = (),
    gaps: Sequence[str] = (),
) -> Path:
    """The Markdown report (and the same as a self-contained HTML page); ``run_failures`` are what the run manifest contradicts,
    ``gaps`` what could not be checked for lack of a registry or manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = [f for a in audits for f in a.failures] + list(run_failures)
    verdict = "FAILED" if failed else "all ledgers verified"
    if gaps and not failed:
        verdict += ", but not everything could be checked (below)"
    people = person_levels(audits)
    md = [
        "# fedmer privacy audit",
        "",
        f"**Result: {verdict}** "
        f"({len(audits)} ledger(s); epsilon recomputed with dp-accounting RDP, "
        f"relative tolerance {rtol:g}, and PLD as the tight reference).",
        "",
        *([f"- Cannot check: {g}" for g in gaps] + ([""] if gaps else [])),
        *person_headline_lines(people),
        "## Budgets",
        "",
        "| ledger | mechanism | entries | refusals | spent ε | budget | remaining | "
        f"person-level ε | subject-level ε by group privacy (k={clips_per_subject}) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for audit in audits:
        subject = "n/a"
        person = people.get(audit.path.name)
        person_cell = _fmt(person.epsilon) if person is not None else "n/a"
        if audit.checks and audit.mechanism() == "dp-sgd":
            history = history_of([c.entry for c in audit.checks])
            delta = float(audit.checks[-1].entry["delta"])
            subject = _fmt(subject_level(history, clips_per_subject, delta).epsilon)
        refusals = sum(c.entry["event"] == "refused" for c in audit.checks)
        md.append(
            f"| `{audit.path.name}` | {audit.mechanism()} | {len(audit.checks)} | {refusals} | "
            f"{_fmt(audit.spent())} | {_budget(audit.budget())} | {_remaining(audit)} | "
            f"{person_cell} | {subject} | {'OK' if audit.ok else 'FAILED'} |"
        )
    md += ["", *[f"- {line}" for line in budget_lines(audits)[len(audits) :]], ""]
    md += [
        "Sample-level ε protects one clip. A subject with k clips is a group of k records; "
        "the subject-level column applies the group-privacy theorem "
        "(k·ε at a smaller sample-level δ', δ = k·e^((k−1)ε)·δ'); ∞ means no finite bound. "
        "Client-level ε (dp-fedavg) protects a device's whole participation and assumes "
        "no client sampling (no amplification).",
        "",
    ]
    restores = [
        f"`{audit.path.name}` seq {c.entry['seq']} (device {c.entry['device_id']}): {c.entry['note']}"
        for audit in audits
        for c in audit.checks
        if c.entry["event"] == "restored"
    ]
    if restores:
        md += [
            "## Ledger gaps",
            "",
            "These devices lost their ledger and an operator restored it from verified copies; "
            "ε continues from the restored chain.",
            "",
            *[f"- {line}" for line in restores],
            "",
        ]
    if failed:
        md += ["## Failures", "", *[f"- {f}" for f in failed], ""]
    md += ["## Entries", ""]
    for audit in audits:
        plot = out_dir / f"epsilon_{_safe(audit.owner)}_{_safe(audit.path.stem)}.png"
        _plot(audit, plot)
        md += [
            f"### {audit.owner} (`{audit.path}`)",
            "",
            f"![epsilon vs round]({plot.name})",
            "",
            "| line | round | event | σ | q | steps | claimed ε | RDP (dp-accounting) | PLD |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in audit.checks:
            e = c.entry
            md.append(
                f"| {c.line} | {e['round']} | {e['event']} | {float(e['sigma']):.4g} | "
                f"{float(e['q']):.4g} | {e['steps']} | {_fmt(float(e['epsilon']))} | "
                f"{_fmt(c.rdp)} | {_fmt(c.pld)} |"
            )
        md.append("")
    path = out_dir / REPORT_FILE
    path.write_text("\n".join(md) + "\n")
    # The same report as one self-contained page, plots embedded, for a person to open.
    (out_dir / HTML_REPORT_FILE).write_text(markdown_page(md, out_dir, "fedmer privacy audit"))
    return path


def _plot(audit: ChainAudit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    rounds = [int(c.entry["round"]) for c in audit.checks]
    ax.plot(
        rounds, [float(c.entry["epsilon"]) for c in audit.checks], "o-", label="claimed (ledger)"
    )
    ax.plot(rounds, [c.rdp for c in audit.checks], "x--", label="dp-accounting RDP")
    ax.plot(rounds, [c.pld for c in audit.checks], ".:", label="dp-accounting PLD")
    refused = [int(c.entry["round"]) for c in audit.checks if c.entry["event"] == "refused"]
    for r in refused:
        ax.axvline(r, color="red", alpha=0.3)
    if audit.budget() > 0:
        ax.axhline(audit.budget(), color="grey", linestyle="--", label="budget")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative ε")
    ax.set_title(f"{audit.owner} ({audit.mechanism()})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.4f}"


def _budget(budget: float) -> str:
    return f"{budget:g}" if budget > 0 else "none"


def _remaining(audit: ChainAudit) -> str:
    return _fmt(max(audit.budget() - audit.spent(), 0.0)) if audit.budget() > 0 else "n/a"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
