"""``fedmer keys N``: authentication and ledger keys for N devices.

For each device ``<prefix>-NNN`` it writes, under ``--out/<device>/``:

* ``auth_key`` (0600) and ``auth_key.pub``: the SuperNode authentication key
  pair (EC P-384, OpenSSH format). Register the public key with the SuperLink
  (``flwr supernode register <device>/auth_key.pub <connection>``) and start the
  SuperNode with ``--auth-supernode-private-key <device>/auth_key``;
* ``device_ed25519.pem`` (0600) and ``device_ed25519.pub.pem``: the device's
  ledger-signing key. Point the SuperNode's node config ``state-dir`` at the
  device folder and the ClientApp signs its privacy ledger with this key.

Copy each folder to its device only. Existing files are never replaced unless
``--force`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "keys",
        help="create SuperNode auth key pairs and ledger-signing keys for N devices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("count", type=int, help="number of devices")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("device-keys"),
        help="one folder per device is created here (default: %(default)s)",
    )
    p.add_argument("--prefix", default="device", help="device id prefix (default: %(default)s)")
    p.add_argument("--start", type=int, default=1, help="number of the first device (default: 1)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from common.credentials import CredentialExistsError, create_device_keys, device_ids

    try:
        keys = create_device_keys(
            args.out, device_ids(args.count, args.prefix, args.start), overwrite=args.force
        )
    except (CredentialExistsError, ValueError) as exc:
        print(f"fedmer keys: error: {exc}", flush=True)
        return 2
    for k in keys:
        print(
            f"[fedmer] {k.device_id}: register {k.auth_public_key}; "
            f"supernode key {k.auth_private_key}; ledger key {k.ledger_private_key}"
        )
    return 0
