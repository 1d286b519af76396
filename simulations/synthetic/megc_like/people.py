"""Subjects of a megc-like lab: who they are, how they express, how many clips each has."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..identity import Identity, sample_identity
from .facs import AU_SPECS, CLASS_COMBINATIONS
from .spec import LabSpec, MegcLikeSpec


def rng_for(spec: MegcLikeSpec, *key: int) -> np.random.Generator:
    """A generator for one purpose of one lab/subject/clip: independent of everything else."""
    return np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(7, *key)))


@dataclass(frozen=True)
class Person:
    """A subject's appearance and expressive habits (constant over their clips)."""

    identity: Identity
    au_gains: dict[str, float]
    # class -> probabilities over CLASS_COMBINATIONS[class]
    combination_weights: dict[str, tuple[float, ...]]
    asymmetry: float
    blink_rate_hz: float
    noise_sigma: float


def sample_person(spec: MegcLikeSpec, lab_index: int, subject: int) -> Person:
    rng = rng_for(spec, lab_index, subject, 0)
    identity = sample_identity(rng)
    gains = {au: float(rng.lognormal(0.0, spec.au_gain_sigma)) for au in sorted(AU_SPECS, key=int)}
    weights = {}
    for label, combos in CLASS_COMBINATIONS.items():
        prior = np.array([w for _, w in combos])
        draw = rng.dirichlet(prior / prior.sum() * spec.combination_concentration * len(combos))
        weights[label] = tuple(float(x) for x in draw)
    return Person(
        identity=identity,
        au_gains=gains,
        combination_weights=weights,
        asymmetry=float(rng.lognormal(0.0, spec.asymmetry_sigma)),
        blink_rate_hz=float(rng.uniform(*spec.blink_rate_hz)),
        noise_sigma=float(rng.uniform(*spec.noise_sigma)),
    )


def allocate_clips(spec: MegcLikeSpec, lab_index: int, lab: LabSpec) -> list[dict[str, int]]:
    """Clips of each class per subject: exactly the lab's class totals, every subject at least
    one clip and at most ``max_clips_per_subject``, unevenly spread as in the releases."""
    rng = rng_for(spec, lab_index, 10_000)
    n = lab.subjects
    activity = rng.gamma(spec.clips_per_subject_shape, 1.0, n)
    counts = [dict.fromkeys(lab.clips, 0) for _ in range(n)]
    for label, total in lab.clips.items():
        # People differ in which emotions the elicitation reached, too.
        affinity = activity * rng.gamma(2.0, 1.0, n)
        for s in rng.choice(n, size=total, p=affinity / affinity.sum()):
            counts[int(s)][label] += 1
    totals = np.array([sum(c.values()) for c in counts])
    # Repair: move clips from the largest subjects to the empty or over-full ones.
    for _ in range(10 * lab.num_clips):
        low = [s for s in range(n) if totals[s] == 0]
        high = [s for s in range(n) if totals[s] > spec.max_clips_per_subject]
        if not low and not high:
            break
        donor = int(high[0]) if high else int(np.argmax(totals))
        taker = int(low[0]) if low else int(np.argmin(totals))
        label = max(counts[donor], key=lambda k: counts[donor][k])
        counts[donor][label] -= 1
        counts[taker][label] += 1
        totals[donor] -= 1
        totals[taker] += 1
    return counts
