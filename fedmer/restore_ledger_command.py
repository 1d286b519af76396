"""``fedmer restore-ledger STATE_DIR --from COPY ...``: on a device whose state was lost.

A device that finds its ledger behind what the coordinator acknowledged (its
state directory was lost, or an old backup restored) refuses every round until
this command has run on it. Give it copies of its chain that reach the
acknowledged head: the coordinator's ``<run>/ledger/devices/<device-id>.jsonl``
of every run the device took part in, and any backup of its
``privacy_ledger.jsonl``. They are merged by seq and verified: every entry
signed by this device's own key, the chain unbroken from seq 0, the entry at
the acknowledged seq bearing the receipt's hash. The restored chain continues,
so ε continues where it was; a signed ``restored`` entry marks the gap, and
``fedmer audit`` lists it. With no such copy (or with the ledger key lost too),
``--retire`` keeps the device refusing for good, with the reason given.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "restore-ledger",
        help="on a device whose state was lost: restore its ledger from verified copies, or retire it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("state_dir", type=Path, metavar="STATE_DIR", help="the device's state-dir")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="copies",
        type=Path,
        action="append",
        metavar="COPY",
        help="a copy of the device's chain (JSONL); repeat for each run's copy and backups",
    )
    source.add_argument(
        "--retire",
        metavar="REASON",
        help="no copy can restore it: refuse private training for good",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.state_loss import RestoreError, restore_ledger, retire

    try:
        if args.retire is not None:
            retire(args.state_dir, args.retire)
            print(f"[fedmer] {args.state_dir}: retired from private training ({args.retire})")
            return 0
        missing = [str(c) for c in args.copies if not c.is_file()]
        if missing:
            print(f"fedmer restore-ledger: copy not found: {', '.join(missing)}")
            return 2
        restored = restore_ledger(args.state_dir, args.copies)
    except (RestoreError, OSError) as exc:
        print(f"fedmer restore-ledger: {exc}")
        return 1
    print(
        f"[fedmer] {args.state_dir}: {restored.entries} entries restored (head seq "
        f"{restored.head_seq} as the coordinator acknowledged); ε continues from "
        f"{restored.epsilon:.4g}; the gap is marked in the ledger"
    )
    return 0
