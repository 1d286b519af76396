"""Dataset kinds by name, and auto-detection of a dataset root.

`read_dataset(root, kind)` is the one entry point `fedmer prepare` uses; kind
"auto" asks every reader whether the root looks like its release. A root whose
folders are several releases side by side (CASME II, SAMM and SMIC-HS for the
MEGC2019 composite) is the kind "composite": each folder is read by its own
reader and the clips keep their dataset's namespace.
"""

from __future__ import annotations

from pathlib import Path

from client.datasets.casme2 import Casme2CroppedReader, Casme2Reader
from client.datasets.casme3 import Casme3Reader
from client.datasets.fourdme import FourDmeReader
from client.datasets.manifest import ManifestError, ManifestTable, read_manifest
from client.datasets.mmew import MmewReader
from client.datasets.release import ReleaseReader
from client.datasets.samm import SammReader
from client.datasets.smic import SmicReader

READERS: dict[str, type[ReleaseReader]] = {
    reader.kind: reader
    for reader in (
        Casme2Reader,
        Casme2CroppedReader,
        SammReader,
        SmicReader,
        Casme3Reader,
        MmewReader,
        FourDmeReader,
    )
}
MANIFEST = "manifest"
COMPOSITE = "composite"
KINDS: tuple[str, ...] = ("auto", *READERS, COMPOSITE, MANIFEST)


def _manifest_path(root: Path) -> Path | None:
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    candidate = root / "manifest.csv"
    return candidate if candidate.is_file() else None


def detect_kind(root: Path | str) -> str:
    """The kind of dataset at `root`; an error lists what was looked for."""
    root = Path(root)
    if not root.exists():
        raise ManifestError(f"{root}: dataset root not found")
    if _manifest_path(root) is not None:
        return MANIFEST
    if CompositeReader().looks_like(root):
        return COMPOSITE
    found = _kinds_of(root)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ManifestError(
            f"{root}: cannot tell which dataset this is (no manifest.csv and no official layout of "
            f"{', '.join(READERS)}); pass --kind"
        )
    raise ManifestError(f"{root}: looks like several datasets ({', '.join(found)}); pass --kind")


def _kinds_of(folder: Path) -> list[str]:
    """Every release kind whose layout `folder` has."""
    return [kind for kind, reader in READERS.items() if reader().looks_like(folder)]


def _single_kind(folder: Path) -> str | None:
    found = _kinds_of(folder)
    return found[0] if len(found) == 1 else None


def composite_parts(root: Path) -> dict[Path, str]:
    """The folders of `root` that are each exactly one release, with their kinds."""
    if not root.is_dir():
        return {}
    parts = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind = _single_kind(folder)
        if kind is not None:
            parts[folder] = kind
    return parts


class CompositeReader(ReleaseReader):
    """Several releases side by side, read each by its own reader into one table."""

    kind = COMPOSITE
    dataset = COMPOSITE

    def looks_like(self, root: Path) -> bool:
        return len(composite_parts(root)) >= 2

    def read(self, root: Path | str) -> ManifestTable:
        root = Path(root)
        parts = composite_parts(root)
        if len(parts) < 2:
            found = ", ".join(f"{p.name} ({k})" for p, k in parts.items()) or "none"
            raise ManifestError(
                f"{root}: a composite needs two or more release folders side by side "
                f"({', '.join(READERS)}); found {found}"
            )
        datasets = [READERS[kind].dataset for kind in parts.values()]
        if len(set(datasets)) < len(datasets):
            raise ManifestError(
                f"{root}: two folders hold the same dataset ({', '.join(datasets)}); "
                "their subjects would collide"
            )
        table = ManifestTable(path=root)
        for folder, kind in parts.items():
            table.extend(READERS[kind]().read(folder))
        return table


def reader_for(kind: str) -> ReleaseReader | None:
    """The release reader of `kind` (None for the generic manifest)."""
    if kind == MANIFEST:
        return None
    if kind == COMPOSITE:
        return CompositeReader()
    try:
        return READERS[kind]()
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {', '.join(KINDS)}") from None


def read_dataset(root: Path | str, kind: str = "auto") -> tuple[str, ManifestTable]:
    """(resolved kind, clip table) of the dataset at `root`."""
    root = Path(root)
    if kind == "auto":
        kind = detect_kind(root)
    reader = reader_for(kind)
    if reader is None:
        path = _manifest_path(root)
        if path is None:
            raise ManifestError(f"{root}: no manifest.csv (pass the CSV file or its folder)")
        return kind, read_manifest(path)
    return kind, reader.read(root)
