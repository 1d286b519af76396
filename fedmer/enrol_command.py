"""``fedmer enrol STATE_DIR --device-id ID``: on a device, create its keys where they stay.

Creates, inside the device's own state directory (the node config's
``state-dir``), its ledger-signing key ``device_ed25519.pem`` and its SuperNode
authentication key pair ``auth_key`` / ``auth_key.pub`` (private keys 0600;
existing keys are kept, never replaced), and writes ``enrolment.json``: the
device id and the two public keys. Send the enrolment (public keys only) to the
operator, who adds it to the key registry (``fedmer registry``) and registers
``auth_key.pub`` with the SuperLink (``flwr supernode register``). Start the
SuperNode with ``--auth-supernode-private-key STATE_DIR/auth_key``. The private
keys never leave the device.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "enrol",
        help="on a device: create its ledger and SuperNode keys in its state dir, print its enrolment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("state_dir", type=Path, metavar="STATE_DIR", help="the device's state-dir")
    p.add_argument("--device-id", required=True, help="the device's id (its node config)")
    p.add_argument(
        "--no-auth-key", action="store_true", help="no SuperNode auth key (simulated devices)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.enrolment import enrol
    from common.privacy.key_registry import ENROLMENT_FILE

    try:
        enrolment = enrol(args.state_dir, args.device_id, with_auth_key=not args.no_auth_key)
    except (ValueError, OSError) as exc:
        print(f"fedmer enrol: {exc}")
        return 2
    print(
        f"[fedmer] {enrolment.device_id}: ledger key {enrolment.ledger_public_key}; "
        f"enrolment {args.state_dir / ENROLMENT_FILE} (public keys only: send it to the operator)"
    )
    return 0
