"""``fedmer megc-like``: write the megc-like benchmark, three synthetic labs in their releases' layouts.

CASME II-, SAMM- and SMIC-HS-shaped labs (68 subjects, 442 clips, the
MEGC2019 composite's counts), hard where real micro-expressions are hard:
sub-pixel to 2 px apex motion, action units shared across classes, people who
each express a class their own way, labels that disagree with the face in a
share of clips, head motion and blinks larger than the expression, flicker and
compression. Every knob is a flag (``docs/megc-like.md`` gives the reasons for
each default). Then ``fedmer prepare OUT`` reads it as a composite of three
releases, like the real ones.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

_NOT_FLAGS = ("labs",)


def _pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return lo, hi


def register(commands: argparse._SubParsersAction) -> None:
    from common.run_config import flag_name
    from simulations.synthetic.megc_like import MegcLikeSpec

    defaults = MegcLikeSpec()
    p = commands.add_parser(
        "megc-like",
        help="write the megc-like benchmark (three synthetic labs, as their releases ship)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", type=Path, metavar="OUT", help="folder to write the three labs into")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in dataclasses.fields(MegcLikeSpec):
        if f.name in _NOT_FLAGS:
            continue
        value: Any = getattr(defaults, f.name)
        parse: dict[str, Any] = (
            {"type": _pair, "metavar": "LOW,HIGH"}
            if isinstance(value, tuple)
            else {"type": type(value)}
        )
        p.add_argument(
            "--" + flag_name(f.name), default=value, help=f.metadata.get("help", ""), **parse
        )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from simulations.synthetic.megc_like import MegcLikeSpec, generate_megc_like, label_agreement

    knobs = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(MegcLikeSpec)
        if f.name not in _NOT_FLAGS
    }
    try:
        spec = MegcLikeSpec(**knobs)
    except ValueError as error:
        print(f"[fedmer] megc-like: {error}")
        return 2
    out = generate_megc_like(args.out, spec, workers=args.workers, progress=not args.no_progress)
    print(
        f"[fedmer] {out}: {spec.num_clips} clips of {spec.num_subjects} subjects in "
        f"{', '.join(lab.dataset for lab in spec.labs)} layouts; "
        f"{label_agreement(out):.0%} of clips show their label's action units"
    )
    print(f"[fedmer] next: fedmer prepare {out}")
    return 0
