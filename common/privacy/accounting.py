"""Sample-level DP-SGD accounting from a recorded (sigma, q, steps) history.

A history is the list Opacus' accountants keep: one ``(noise_multiplier,
sample_rate, num_steps)`` segment per change of parameters. Devices persist it
across rounds (and restarts) so that epsilon is cumulative over the whole run,
never per round. Note that ``len(history)`` counts segments, not steps.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

Segment = tuple[float, float, int]

# Opacus' RDPAccountant.DEFAULT_ALPHAS (equality tested), spelled out so that
# accounting does not need the accountant class.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))

_OPACUS_RDP = "opacus.accountants.analysis.rdp"


@lru_cache(maxsize=1)
def _rdp_analysis() -> ModuleType:
    """Opacus' RDP analysis (``opacus/accountants/analysis/rdp.py``), without the rest of Opacus.

    Importing any Opacus module runs ``opacus/__init__``, which loads the privacy
    engine, its optimizers and torch.distributed: 1.3 s. Flower starts a fresh
    ClientApp process for every message, so the census and evaluation handlers,
    which account but never train, would pay it each time. That file needs only
    numpy and scipy, so it is loaded by path: the same code Opacus' RDPAccountant
    runs, and the same figures (``tests/unit/test_privacy_accounting.py``).
    """
    if _OPACUS_RDP in sys.modules:  # the train handler has imported Opacus already
        return sys.modules[_OPACUS_RDP]
    package = importlib.util.find_spec("opacus")  # locates the package without running it
    if package is None or not package.submodule_search_locations:
        raise ImportError("opacus is not installed; fedmer's accounting uses its RDP analysis")
    path = f"{package.submodule_search_locations[0]}/accountants/analysis/rdp.py"
    spec = importlib.util.spec_from_file_location("fedmer_opacus_rdp_analysis", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"Opacus' RDP analysis is not at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def total_steps(history: Iterable[Segment]) -> int:
    """Number of noisy gradient steps in a history."""
    return sum(int(steps) for _, _, steps in history)


def merge_segment(history: Sequence[Segment], segment: Segment) -> list[Segment]:
    """``history`` with ``segment``'s steps added, merged into a segment of the same (σ, q)."""
    sigma, q, steps = float(segment[0]), float(segment[1]), int(segment[2])
    merged, found = [], False
    for s, r, n in history:
        if float(s) == sigma and float(r) == q:
            merged.append((sigma, q, int(n) + steps))
            found = True
        else:
            merged.append((float(s), float(r), int(n)))
    return merged if found else [*merged, (sigma, q, steps)]


def epsilon_rdp(history: Sequence[Segment], delta: float) -> float:
    """Cumulative epsilon from Renyi DP (the figure fedmer reports).

    Same orders and conversion as Opacus' ``RDPAccountant.get_epsilon``; the
    per-step RDP curve of each (sigma, q) is cached because budget checks and
    group-privacy searches evaluate the same history many times.
    """
    if not history:
        return 0.0
    if _noiseless(history):
        return math.inf
    rdp = sum(np.asarray(_unit_rdp(float(s), float(q))) * int(n) for s, q, n in history)
    eps, _ = _rdp_analysis().get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


@lru_cache(maxsize=256)
def _unit_rdp(sigma: float, q: float) -> tuple[float, ...]:
    """RDP of one sampled Gaussian step at Opacus' default orders (linear in steps)."""
    rdp = _rdp_analysis().compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(RDP_ORDERS))
    return tuple(float(x) for x in np.atleast_1d(rdp))


def epsilon_prv(history: Sequence[Segment], delta: float) -> float:
    """Cumulative epsilon from the PRV accountant: a tighter second opinion.

    Opacus' own PRV accountant, except that the safe discretization domain
    (Gopi et al., remark 5.6: RDP epsilons of the history and of one step of
    each segment) comes from the cached RDP curves of :func:`epsilon_rdp`.
    Opacus recomputes those curves, at fractional orders, on every call, which
    was nine tenths of a device's accounting time per round; the domain, and
    so the result, is the same (``tests/unit/test_privacy_accounting.py``).
    """
    if not history:
        return 0.0
    if _noiseless(history):
        return math.inf
    accountant = _cached_domain_prv_class()()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    # At q = 1 (a release without subsampling) Opacus' PRV takes log(1 - q) = -inf
    # on the way to a correct result; the warning it prints is noise.
    with np.errstate(divide="ignore"):
        return float(accountant.get_epsilon(delta=delta))


@lru_cache(maxsize=1)
def _cached_domain_prv_class() -> Any:
    """Opacus' PRV accountant with its domain computed from cached RDP curves.

    Built on first use: only the train handler asks for a PRV figure, and
    importing Opacus' accountants loads all of Opacus.
    """
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis.prv import Domain

    class CachedDomainPRV(PRVAccountant):
        def _get_domain(self, prvs, num_self_compositions, eps_error, delta_error):
            # Opacus' compute_safe_domain_size, with epsilon_rdp for its two RDP
            # accountants (the same orders and conversion).
            total = sum(num_self_compositions)
            segments = [
                (prv.noise_multiplier, prv.sample_rate, n)
                for prv, n in zip(prvs, num_self_compositions, strict=True)
            ]
            l_max = epsilon_rdp(segments, delta_error / 4)
            for sigma, q, _ in segments:
                l_max = max(l_max, epsilon_rdp([(sigma, q, 1)], delta_error / (8 * total)))
            half_width = max(l_max, eps_error) + 3
            mesh_size = eps_error / np.sqrt(total * np.log(12 / delta_error) / 2)
            return Domain.create_aligned(-half_width, half_width, mesh_size)

    return CachedDomainPRV


def _noiseless(history: Sequence[Segment]) -> bool:
    """A step without noise (sigma = 0, the non-private baseline) has no finite epsilon."""
    return any(float(s) <= 0 and int(n) > 0 for s, _, n in history)


@lru_cache(maxsize=64)
def calibrate_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """Smallest sigma (to 0.2%) whose RDP epsilon over ``steps`` steps is <= the target
    by both Opacus' and dp-accounting's RDP accountants.

    Called once for the whole planned run: calibrating per round would let the
    total exceed the target. Each epsilon evaluation costs ~0.3 s, so instead
    of Opacus' plain bisection (~20 evaluations) this runs regula falsi
    (Illinois variant) on log(epsilon) against log(sigma), which is nearly
    linear, and converges in a handful of evaluations. The returned sigma is
    always from the side of the bracket that meets the target.
    """
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be positive, got {target_epsilon}")
    if steps <= 0:
        raise ValueError(f"planned steps must be positive, got {steps}")

    # Imported here: the independent accountant imports this module's types.
    from common.privacy.independent import independent_rdp_epsilon

    def gap(log_sigma: float) -> float:
        # Both accountants must meet the target: devices claim Opacus' RDP figure,
        # reports and auditors recompute with dp-accounting's, and the two differ
        # by up to about 0.5 % at large q.
        history = [(math.exp(log_sigma), sample_rate, steps)]
        eps = max(epsilon_rdp(history, delta), independent_rdp_epsilon(history, delta))
        return math.log(max(eps, 1e-12)) - math.log(target_epsilon)

    lo, hi = math.log(0.3), math.log(2.0)
    f_lo, f_hi = gap(lo), gap(hi)
    while f_hi > 0:  # not enough noise yet: widen upwards
        lo, f_lo = hi, f_hi
        hi += math.log(2.0)
        f_hi = gap(hi)
    while f_lo < 0:  # too much noise even at the bottom: widen downwards
        hi, f_hi = lo, f_lo
        lo -= math.log(2.0)
        f_lo = gap(lo)
    side = 0
    for _ in range(60):
        if hi - lo < 2e-3 or -2e-3 < f_hi <= 0:
            break
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        mid = min(max(mid, lo + 1e-4), hi - 1e-4)
        f_mid = gap(mid)
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            if side == -1:
                f_hi /= 2
            side = -1
        else:
            hi, f_hi = mid, f_mid
            if side == 1:
                f_lo /= 2
            side = 1
    return float(math.exp(hi))
