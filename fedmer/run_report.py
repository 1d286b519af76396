"""One self-contained HTML page per run: what a person looks at after ``fedmer simulate``.

Read from what the run left behind (``results.json`` and the ledgers in its
folder), nothing else: per-round utility and privacy curves, the final
released confusion matrix, each device's privacy spend against its budget,
declined and failed devices, the client-level guarantee and the
configuration. Plots are PNGs embedded as data URIs, so the page is one file
that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from client.run_model import read_run_file
from common.results_schema import RESULTS_FILE

REPORT_FILE = "report.html"


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` for the run in ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    results = read_run_file(run_dir / RESULTS_FILE)
    budgets = _budgets_from_ledgers(run_dir / "ledger" / "devices")
    page = render_report(results, budgets, title=f"fedmer run: {run_dir.name}")
    target = out or run_dir / REPORT_FILE
    target.write_text(page, encoding="utf-8")
    return target


def render_report(
    results: Mapping[str, Any], budgets: Mapping[str, float], title: str = "fedmer run"
) -> str:
    rounds = list(results.get("rounds", []))
    if results.get("round_0"):
        rounds = [results["round_0"], *rounds]  # the starting model, before any round
    privacy = results.get("privacy", {})
    sections = [
        _headline(results, privacy),
        _people_table(privacy),
        _figure("Held-out utility and privacy spend per round", _rounds_png(rounds)),
        _figure("Final released confusion counts (noised)", _confusion_png(results, rounds)),
        _figure("Sample-level ε per device", _spend_png(privacy.get("devices", {}), budgets)),
        _device_table(results, privacy, budgets),
        _client_level(privacy.get("client_level", {})),
        _round_table(rounds),
        _config_table(results.get("config", {})),
    ]
    body = "\n".join(s for s in sections if s)
    return _PAGE.format(title=html.escape(title), body=body)


def _headline(results: Mapping[str, Any], privacy: Mapping[str, Any]) -> str:
    final = results.get("final") or {}
    headline = privacy.get("headline") or {}
    start = results.get("round_0") or {}
    rows = [
        (
            "ε per person (worst subject)",
            f"{_num(headline.get('epsilon'))} at δ = {_num(headline.get('delta'))}",
        ),
        ("holds against", str(headline.get("against", "?"))),
        ("ε per person against the coordinator", _num(headline.get("against_coordinator_epsilon"))),
        ("rounds completed", str(len(results.get("rounds", [])))),
        ("final held-out UF1", _num(final.get("uf1"))),
        ("final held-out UAR", _num(final.get("uar"))),
        (
            "starting model (round 0) UF1 / UAR",
            f"{_num(start.get('uf1'))} / {_num(start.get('uar'))}",
        ),
        ("starting model", str((results.get("pretraining") or {}).get("summary", "random"))),
        ("ε in each device's mechanism unit (worst device)", _num(privacy.get("worst_epsilon"))),
        ("private", "yes" if privacy.get("private") else "NO"),
    ]
    reasons = privacy.get("not_private_because") or []
    if results.get("stopped"):
        rows.append(("stopped", str(results["stopped"])))
    items = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    warning = ""
    if reasons:
        warning = '<p class="warn">Not private because: ' + html.escape("; ".join(reasons)) + "</p>"
    note = f"<p class='note'>{html.escape(str(privacy.get('note', '')))}</p>"
    return f"<section><h2>Summary</h2><table>{items}</table>{warning}{note}</section>"


def _people_table(privacy: Mapping[str, Any]) -> str:
    """One row per subject (the simulation harness knows who is where; a deployment
    has one row per device, each of whose subjects gets that guarantee)."""
    subjects = privacy.get("subjects") or [
        {"subject": "every subject on the device", "device": d, **p}
        for d, p in sorted((privacy.get("person_level") or {}).items())
    ]
    if not subjects:
        return ""
    header = "<tr><th>subject</th><th>device</th><th>role</th><th>mechanisms</th><th>ε</th><th>δ</th><th>against</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(str(r.get('subject')))}</td><td>{html.escape(str(r.get('device')))}</td>"
        f"<td>{html.escape(str(r.get('role', '')))}</td>"
        f"<td>{html.escape(', '.join(r.get('mechanisms', [])))}</td>"
        f"<td>{_num(r.get('epsilon'))}</td><td>{_num(r.get('delta'))}</td>"
        f"<td>{html.escape(str(r.get('against', '')))}</td></tr>"
        for r in subjects
    )
    return (
        "<section><h2>People</h2><p>The guarantee each subject has, recomputed from the "
        "signed ledger entries of the device that holds them.</p>"
        f"<table>{header}{rows}</table></section>"
    )


def _device_table(
    results: Mapping[str, Any], privacy: Mapping[str, Any], budgets: Mapping[str, float]
) -> str:
    roles = results.get("devices", {})
    spent = privacy.get("devices", {})
    header = "<tr><th>device</th><th>role</th><th>ε (RDP)</th><th>ε (PRV)</th><th>δ</th><th>σ</th><th>q</th><th>steps</th><th>budget</th></tr>"
    rows = []
    for device in sorted(set(roles) | set(spent)):
        s = spent.get(device, {})
        budget = budgets.get(device)
        over = budget is not None and budget > 0 and float(s.get("epsilon", 0) or 0) > budget
        rows.append(
            f"<tr{' class=warn' if over else ''}><td>{html.escape(device)}</td>"
            f"<td>{html.escape(str(roles.get(device, '?')))}</td>"
            + "".join(
                f"<td>{_num(s.get(k))}</td>"
                for k in ("epsilon", "epsilon_prv", "delta", "noise_multiplier", "sample_rate")
            )
            + f"<td>{html.escape(str(s.get('steps', '')))}</td><td>{_num(budget)}</td></tr>"
        )
    return (
        "<section><h2>Devices</h2><p>Sample-level (per clip) spend each training device "
        "reported, against the budget in its own signed ledger.</p>"
        f"<table>{header}{''.join(rows)}</table></section>"
    )


def _client_level(client: Mapping[str, Any]) -> str:
    if not client or not client.get("enabled"):
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
        for k, v in client.items()
    )
    return f"<section><h2>Client-level DP-FedAvg</h2><table>{rows}</table></section>"


def _round_table(rounds: Sequence[Mapping[str, Any]]) -> str:
    header = "<tr><th>round</th><th>UF1</th><th>UAR</th><th>ε per person</th><th>ε (device unit)</th><th>trained</th><th>declined</th><th>failed</th><th>seconds</th></tr>"
    rows = []
    for r in rounds:
        declined = {**r.get("declined", {}), **r.get("heldout_declined", {})}
        rows.append(
            f"<tr><td>{r.get('round')}</td><td>{_num(r.get('uf1'))}</td><td>{_num(r.get('uar'))}</td>"
            f"<td>{_num(r.get('person_epsilon'))}</td>"
            f"<td>{_num(r.get('epsilon'))}</td><td>{len(r.get('trained', []))}</td>"
            f"<td>{_pairs(declined)}</td><td>{_pairs(r.get('failed', {}))}</td>"
            f"<td>{_num(r.get('seconds'))}</td></tr>"
        )
    return f"<section><h2>Rounds</h2><table>{header}{''.join(rows)}</table></section>"


def _config_table(config: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
        for k, v in sorted(config.items())
    )
    return f"<section><h2>Run config</h2><table>{rows}</table></section>"


def _budgets_from_ledgers(folder: Path) -> dict[str, float]:
    """Each device's budget, as its last signed ledger entry states it."""
    budgets: dict[str, float] = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            try:
                budgets[path.stem] = float(json.loads(lines[-1]).get("budget", 0.0))
            except (ValueError, AttributeError):
                continue  # the auditor, not the report, judges a damaged ledger
    return budgets


# -- plots ---------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _rounds_png(rounds: Sequence[Mapping[str, Any]]) -> bytes | None:
    if not rounds:
        return None
    plt = _pyplot()
    xs = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(xs, [r["uf1"] for r in rounds], "o-", label="held-out UF1")
    ax.plot(xs, [r["uar"] for r in rounds], "s-", label="held-out UAR")
    ax.axhline(1 / 3, color="grey", ls=":", lw=1, label="chance (3 classes)")
    ax.set(xlabel="round", ylabel="UF1 / UAR", ylim=(0, 1))
    ax.xaxis.set_major_locator(_integer_ticks())
    ax2 = ax.twinx()
    person = [r.get("person_epsilon", 0.0) for r in rounds]
    person = [p if _finite(p) else math.nan for p in person]
    ax2.plot(xs, person, "^-", color="tab:red", label="ε per person (worst subject)")
    eps = [r.get("epsilon", 0.0) if _finite(r.get("epsilon", 0.0)) else math.nan for r in rounds]
    ax2.plot(xs, eps, "v--", color="tab:orange", alpha=0.7, label="ε, device unit")
    ax2.set_ylabel("cumulative ε", color="tab:red")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _confusion_png(results: Mapping[str, Any], rounds: Sequence[Mapping[str, Any]]) -> bytes | None:
    final = results.get("final") or (rounds[-1] if rounds else None)
    if not final or not final.get("released"):
        return None
    plt = _pyplot()
    matrix = final["released"]
    classes = list(results.get("classes") or range(len(matrix)))
    fig, ax = plt.subplots(figsize=(4.6, 4), dpi=110)
    image = ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=30)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set(xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


def _spend_png(devices: Mapping[str, Any], budgets: Mapping[str, float]) -> bytes | None:
    names = sorted(devices)
    if not names:
        return None
    plt = _pyplot()
    values = [float(devices[n].get("epsilon") or 0.0) for n in names]
    shown = [v if math.isfinite(v) else 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=110)
    ax.bar(
        range(len(names)),
        shown,
        color=["tab:red" if not math.isfinite(v) else "tab:blue" for v in values],
    )
    for i, name in enumerate(names):
        if budgets.get(name, 0) > 0:
            ax.hlines(budgets[name], i - 0.4, i + 0.4, colors="black", lw=2)
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
    ax.set_ylabel("ε (bar) and budget (line)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _figure(caption: str, png: bytes | None) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


# -- formatting ----------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "∞" if value == math.inf else f"{value:.4g}"
    return html.escape(str(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _pairs(values: Mapping[str, Any]) -> str:
    return "<br>".join(
        f"{html.escape(k)}: {html.escape(str(v))}" for k, v in sorted(values.items())
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
.warn, tr.warn td {{ color: #a00; font-weight: bold; }}
.note {{ color: #555; font-size: 0.9em; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
