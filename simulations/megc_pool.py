"""A larger megc-like population: several megc-like cohorts (one per seed) as one manifest.

One megc-like cohort has the composite's 68 subjects. The person-level
frontier asks how many people federated MER needs, so it needs cohorts of 256
and 1,024 people with the same difficulty. Each seed draws new people (faces,
idiosyncrasies, clip counts), so cohorts of different seeds hold different
people; pooling their prepared manifests, with each subject renamed after its
seed, gives a population of 68 × seeds. Every cohort is prepared with the same
settings; the features stay where ``fedmer prepare`` cached them.

    python -m simulations.megc_pool runs/megc-pool/pooled \\
        runs/megc-like/prepared/manifest.csv runs/megc-pool/seed-{1..15}/prepared/manifest.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from client.datasets.manifest import read_manifest, write_manifest
from client.prepare import PREPARE_REPORT


def pooled_subject(subject: str, tag: str) -> str:
    """``casme2/sub01`` of cohort ``s03`` becomes ``casme2/s03-sub01``: still of its dataset."""
    dataset, _, name = subject.partition("/")
    return f"{dataset}/{tag}-{name}" if name else f"{tag}-{subject}"


def pool_manifests(manifests: Sequence[Path], out_dir: Path) -> Path:
    """Write ``out_dir/manifest.csv``: every clip of ``manifests``, subjects tagged by cohort.

    The cohorts must have been prepared with one preprocessing configuration
    (their ``prepare.json`` fingerprints agree), or their features would not be
    comparable; the first cohort's ``prepare.json`` is kept beside the pool.
    """
    if not manifests:
        raise ValueError("pool_manifests needs at least one manifest")
    fingerprints = {}
    records = []
    for index, manifest in enumerate(manifests):
        report = Path(manifest).parent / PREPARE_REPORT
        if not report.exists():
            raise ValueError(f"{manifest}: no {PREPARE_REPORT} beside it (not from fedmer prepare)")
        fingerprints[str(manifest)] = json.loads(report.read_text())["config_fingerprint"]
        tag = f"s{index:02d}"
        for clip in read_manifest(manifest).clips:
            subject = pooled_subject(clip.subject, tag)
            clip_id = subject + clip.clip_id[len(clip.subject) :]
            records.append(dataclasses.replace(clip, subject=subject, clip_id=clip_id))
    if len(set(fingerprints.values())) > 1:
        raise ValueError(f"the cohorts were prepared with different settings: {fingerprints}")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(manifests[0]).parent / PREPARE_REPORT, out_dir / PREPARE_REPORT)
    return write_manifest(out_dir / "manifest.csv", records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for the pooled manifest.csv")
    parser.add_argument("manifests", type=Path, nargs="+", help="prepared megc-like manifests")
    args = parser.parse_args(argv)
    path = pool_manifests(args.manifests, args.out)
    table = read_manifest(path)
    print(f"{path}: {len(table.clips)} clips of {len({c.subject for c in table.clips})} subjects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
