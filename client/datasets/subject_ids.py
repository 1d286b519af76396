"""Subject ids as the releases write them, and as their folders are named."""

from __future__ import annotations

import re

from client.datasets.manifest import RowProblem

_DIGITS = re.compile(r"(\d+)")


def subject_number(text: str) -> int:
    """The number in a subject cell: 1, "01", "sub01", "s1" -> 1."""
    match = _DIGITS.search(text)
    if not match:
        raise RowProblem(f"subject {text!r} has no subject number")
    return int(match.group(1))


def padded_subject(text: str, prefix: str, width: int) -> str:
    """Folder name of a subject: ("1", "sub", 2) -> "sub01"; ("6", "", 3) -> "006"."""
    return f"{prefix}{subject_number(text):0{width}d}"
