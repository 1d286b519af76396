"""Finding a release's annotation files and frame folders by searching its tree.

Releases are unpacked in more than one way: CAS(ME)^3 Part A puts its frames
four folders down (`part_A/data/part_A_split/part_A/`), 4DME ships
`gray_micro/` and `gray_micro_crop/`, SMIC has `SMIC_all_raw/HS` and
`SMIC_all_cropped/HS`.  Rather than one fixed path per reader, the readers
search the tree for the folder names their documentation gives, to a bounded
depth, and never descend into a frame folder (a folder holding images), so
the search costs one directory listing per clip at most.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from client.datasets.frames import IMAGE_EXTENSIONS

# Deep enough for `part_A/data/part_A_split/part_A/` below a folder holding
# the release; shallow enough that a search never wanders far.
MAX_DEPTH = 5


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_folders(root: Path, max_depth: int = MAX_DEPTH) -> Iterator[tuple[Path, int, list[str]]]:
    """(folder, depth, file names) breadth-first from `root` (depth 0), in name order.

    Hidden folders are skipped and frame folders are not descended into."""
    queue: deque[tuple[Path, int]] = deque([(root, 0)])
    while queue:
        folder, depth = queue.popleft()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        files = [e.name for e in entries if e.is_file()]
        yield folder, depth, files
        if depth >= max_depth or any(_is_image(name) for name in files):
            continue
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                queue.append((Path(entry.path), depth + 1))


def files_matching(root: Path, pattern: str, max_depth: int = 3) -> list[Path]:
    """Files below `root` whose name matches the glob `pattern` (any case), shallowest first."""
    wanted = pattern.lower()
    return [
        folder / name
        for folder, _, files in walk_folders(root, max_depth)
        for name in files
        if fnmatchcase(name.lower(), wanted) and not name.startswith("~$")
    ]


def folders_named(root: Path, names: Iterable[str], max_depth: int = MAX_DEPTH) -> list[Path]:
    """Folders below `root` (root excluded) whose name is one of `names`, shallowest first."""
    wanted = set(names)
    return [
        folder
        for folder, depth, _ in walk_folders(root, max_depth)
        if depth > 0 and folder.name in wanted
    ]


def candidate_roots(root: Path, declared: Iterable[str]) -> list[Path]:
    """Folders that may hold a release's frame tree, most specific first.

    `declared` are paths relative to `root` ("." is root itself) in the
    reader's order of preference; after them come folders found anywhere in
    the tree bearing the last name of a declared path."""
    declared = list(declared)
    found: list[Path] = []
    for relative in declared:
        folder = root / relative
        if folder.is_dir() and folder not in found:
            found.append(folder)
    names = {Path(relative).name for relative in declared if relative != "."}
    for folder in folders_named(root, names):
        if folder not in found:
            found.append(folder)
    return found


def shown(root: Path, folders: Iterable[Path]) -> str:
    """Folders relative to `root`, for messages."""
    texts = []
    for folder in folders:
        try:
            texts.append(str(folder.relative_to(root)) or ".")
        except ValueError:
            texts.append(str(folder))
    return ", ".join(texts) or "none"
