"""CLI flags generated from the run-config schema, under the run config's own names.

``--num-server-rounds`` sets ``num-server-rounds``, exactly as
``flwr run . --run-config "num-server-rounds=5"`` would; the help text and
default come from :class:`common.run_config.RunConfig`, so the CLI cannot
drift from the schema.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from common.run_config import SIDES, RunConfig, run_config_keys

# Short aliases kept for the flags users type most.
ALIASES = {"data-manifest": ("--data",), "out-dir": ("--out",)}


def add_run_config_flags(
    parser: argparse.ArgumentParser,
    exclude: Iterable[str] = (),
    defaults: RunConfig | None = None,
) -> None:
    """One flag per run-config key not in ``exclude``, grouped by the side that reads it."""
    excluded = set(exclude)
    defaults = defaults or RunConfig()
    for side in SIDES:
        group = parser.add_argument_group(f"run config read by the {side}")
        for key in run_config_keys((side,)):
            if key.name in excluded:
                continue
            default = getattr(defaults, key.attribute)
            names = (f"--{key.name}", *ALIASES.get(key.name, ()))
            if key.type is bool:
                group.add_argument(
                    *names,
                    dest=key.attribute,
                    action=argparse.BooleanOptionalAction,
                    default=default,
                    help=key.help,
                )
            else:
                group.add_argument(
                    *names,
                    dest=key.attribute,
                    type=key.type,
                    default=default,
                    metavar=key.type.__name__.upper(),
                    help=key.help,
                )


def run_config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The run config the parsed flags describe (keys without a flag keep ``base``'s value)."""
    base = base or RunConfig()
    changes = {
        key.attribute: getattr(args, key.attribute)
        for key in run_config_keys()
        if hasattr(args, key.attribute)
    }
    return base.replace(**changes)
