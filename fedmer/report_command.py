"""``fedmer report``: one self-contained HTML page for a run (plots embedded).

Per-round utility and privacy curves, the final released confusion counts,
each device's privacy spend against its budget, declined and failed devices,
the client-level guarantee and the run config. ``fedmer simulate`` writes it
at the end of every run; this command (re)writes it for any run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report",
        help="write a run's self-contained HTML report",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    p.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="also render the page in headless Chromium/Chrome and save a screenshot",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fedmer.run_report import write_report

    try:
        path = write_report(args.run_dir, args.out)
    except ValueError as exc:
        print(f"fedmer report: {exc}", file=sys.stderr)
        return 2
    print(f"[fedmer] report: {path}")
    if args.screenshot:
        from fedmer.browser_screenshot import BrowserNotFound, screenshot

        try:
            shot = screenshot(path, args.screenshot)
        except (BrowserNotFound, RuntimeError, OSError) as exc:
            print(f"fedmer report: screenshot: {exc}", file=sys.stderr)
            return 1
        print(f"[fedmer] screenshot: {shot}")
    return 0
