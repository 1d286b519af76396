"""The ``fedmer`` command line: one subcommand per job users bring to fedmer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedmer import (
    audit_command,
    certs_command,
    compare_command,
    device_worker_command,
    enrol_command,
    evaluate_command,
    export_command,
    long_video_command,
    megc_like_command,
    predict_command,
    prepare_command,
    registry_command,
    report_command,
    restore_ledger_command,
    simulate_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedmer",
        description=(
            "Federated, differentially private micro-expression recognition. "
            "Raw faces and the features derived from them never leave a device."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate_command.register(commands)
    audit_command.register(commands)
    evaluate_command.register(commands)
    compare_command.register(commands)
    prepare_command.register(commands)
    predict_command.register(commands)
    long_video_command.register(commands)
    megc_like_command.register(commands)
    export_command.register(commands)
    report_command.register(commands)
    certs_command.register(commands)
    enrol_command.register(commands)
    registry_command.register(commands)
    restore_ledger_command.register(commands)
    device_worker_command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
