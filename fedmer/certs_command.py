"""``fedmer certs``: a CA and a SuperLink TLS certificate with your SANs.

The SuperLink serves TLS with ``server.pem`` + ``server.key`` (and ``ca.pem``
as ``--ssl-ca-certfile``); every SuperNode gets ``ca.pem`` as
``--root-certificates``. List every name and address devices will use to reach
the SuperLink with ``--san`` (DNS names and IP addresses, repeatable or
comma-separated). Keep ``ca.key`` offline: whoever holds it can impersonate
the SuperLink. Existing files are never replaced unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "certs",
        help="create a CA and a SuperLink TLS certificate (DNS/IP SANs of your choice)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("certificates"),
        help="folder for ca.pem, ca.key, server.pem, server.key (default: %(default)s)",
    )
    p.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="DNS name or IP address of the SuperLink; repeatable or comma-separated "
        "(default: localhost,127.0.0.1,::1)",
    )
    p.add_argument("--common-name", default="fedmer SuperLink")
    p.add_argument("--days", type=int, default=365, help="validity (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from common.credentials import CredentialExistsError, create_certificates

    sans = [s for item in args.san for s in item.split(",") if s.strip()] or [
        "localhost",
        "127.0.0.1",
        "::1",
    ]
    try:
        paths = create_certificates(
            args.out, sans, common_name=args.common_name, days=args.days, overwrite=args.force
        )
    except (CredentialExistsError, ValueError) as exc:
        print(f"fedmer certs: error: {exc}", flush=True)
        return 2
    print(
        f"[fedmer] CA certificate     {paths.ca_cert}   (give to every SuperNode: --root-certificates)"
    )
    print(f"[fedmer] CA private key     {paths.ca_key}   (0600; keep offline)")
    print(f"[fedmer] server certificate {paths.server_cert}   SANs: {', '.join(sans)}")
    print(f"[fedmer] server private key {paths.server_key}   (0600)")
    return 0
