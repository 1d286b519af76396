"""``fedmer device-worker --socket PATH``: on a device, handle its SuperNode's messages warm.

Run it beside the device's ``flower-supernode``, under the same account, and
give the SuperNode the same path in its node config (``device-worker='PATH'``).
Each message Flower receives is then handled in this one long-lived process,
with torch, fedmer's device code and the device's data loaded once, instead
of in a fresh process per message. The handlers, their privacy checks and the
ledger are the same code either way. Stop it with SIGTERM or Ctrl-C; restart
it after updating fedmer (a run whose app ships other code is refused).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "device-worker",
        help="on a device: a warm worker that handles its SuperNode's messages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket",
        type=Path,
        required=True,
        help="Unix socket to serve (the node config's device-worker); its key is PATH.key",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for training and evaluation (default: 1; the device's "
        "model is small, and idle threads spin while the SuperNode's processes need the cores)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from client.device_worker import serve
    from client.worker_link import DeviceWorkerError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        serve(args.socket, torch_threads=args.torch_threads)
    except DeviceWorkerError as err:
        print(f"fedmer device-worker: {err}")
        return 2
    return 0
