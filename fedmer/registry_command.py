"""``fedmer registry ENROLMENT...``: the operator's signed key registry.

Reads device enrolments (``enrolment.json`` files, or state folders holding
one), adds the coordinator's public key, and signs the registry with the
operator's Ed25519 key (``--operator-key``; created, 0600, on first use, by
default at ``$FEDMER_OPERATOR_KEY`` or ``~/.config/fedmer/operator_ed25519.pem``).
Give auditors the registry and, out of band, the operator's public key that
this command prints: ``fedmer audit --registry registry.json --operator-key KEY``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "registry",
        help="operator: sign a key registry from the devices' enrolments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "enrolments", nargs="+", type=Path, metavar="ENROLMENT", help="enrolment.json or its folder"
    )
    p.add_argument("--out", type=Path, default=Path("registry.json"))
    p.add_argument("--operator-key", type=Path, help="the operator's Ed25519 signing key (PEM)")
    p.add_argument(
        "--coordinator-public-key",
        help="base64 raw Ed25519 (default: that of this machine's coordinator key)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from common.privacy.key_registry import ENROLMENT_FILE, Enrolment
    from common.privacy.signed_document import DocumentError
    from server.operator_registry import write_registry

    try:
        enrolments = [
            Enrolment.read(p / ENROLMENT_FILE if p.is_dir() else p) for p in args.enrolments
        ]
        path, operator = write_registry(
            args.out, enrolments, args.operator_key, args.coordinator_public_key
        )
    except (DocumentError, ValueError, OSError) as exc:
        print(f"fedmer registry: {exc}")
        return 2
    print(f"[fedmer] {path}: {len(enrolments)} device(s); operator key {operator}")
    return 0
