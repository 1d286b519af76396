"""``fedmer compare``: what federation costs, and what DP costs, on one protocol.

Runs centralized, non-DP FedAvg and FedAvg+DP-SGD at each ε of the sweep on
the same folds, then writes ``comparison.md`` (table), ``privacy_utility.png``
(UF1 and UAR against ε, with the centralized and non-DP FedAvg lines) and
each row's pooled results under ``<row>/protocol.json``, with every fold's
``results.json`` (and the devices' ledgers) under ``<row>/fold-NN/``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from common.atomic_io import write_json_atomic
from fedmer.evaluate_command import (
    SUMMARY_FILE,
    add_protocol_arguments,
    fail,
    load_data,
    quiet_flower,
    say,
    spec_from_args,
)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare",
        help="centralized vs FedAvg vs FedAvg+DP over an ε sweep: table and plot",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--epsilons",
        default="1,2,4,8,inf",
        help="comma-separated ε sweep; inf is the non-DP FedAvg row",
    )
    add_protocol_arguments(p, default_out="runs/compare")
    p.set_defaults(handler=run)


def parse_epsilons(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--epsilons {text!r}: expected numbers such as 1,4,8,inf") from None


def run(args: argparse.Namespace) -> int:
    from simulations.protocols.compare import (
        comparison_specs,
        plot_privacy_utility,
        render_per_dataset,
        render_table,
    )
    from simulations.protocols.runner import make_folds, run_protocol

    started = time.monotonic()
    out_dir = Path(args.out_dir).resolve()
    command = "fedmer " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else ""
    try:
        specs = comparison_specs(spec_from_args(args, "centralized"), parse_epsilons(args.epsilons))
        data, manifest = load_data(args)
        # Folds are checked before hours of training, not after the first row.
        make_folds(data, specs[0])
    except ValueError as err:
        return fail(err)
    quiet_flower()
    results = []
    for number, spec in enumerate(specs, 1):
        label = spec.mode + (f" ε={spec.epsilon:g}" if spec.epsilon else "")
        say(f"[{number}/{len(specs)}] {label}")
        name = spec.mode + (f"-eps{spec.epsilon:g}" if spec.epsilon else "")
        result = run_protocol(data, spec, manifest, out_dir / name, say)
        result["manifest"] = str(manifest)
        write_json_atomic(out_dir / name / SUMMARY_FILE, result)
        results.append(result)
    table = render_table(results)
    per_dataset = render_per_dataset(results)
    header = (
        f"# fedmer compare: {args.protocol}, model {args.model}, seed {args.seed}\n\n"
        + (f"Command: `{command}`\n\n" if command else "")
        + f"Data: `{manifest}`; {len(data)} clips. Elapsed {time.monotonic() - started:.0f}s.\n\n"
    )
    (out_dir).mkdir(parents=True, exist_ok=True)
    extra = "\n" + per_dataset if per_dataset else ""
    (out_dir / "comparison.md").write_text(header + table + extra)
    write_json_atomic(out_dir / "comparison.json", {"command": command, "rows": results})
    plot_privacy_utility(results, out_dir / "privacy_utility.png")
    print(table, flush=True)
    say(f"wrote {out_dir / 'comparison.md'} and {out_dir / 'privacy_utility.png'}")
    return 0
