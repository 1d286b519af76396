"""The aggregation strategy, chosen by name: plain or Byzantine-robust.

Server side. Every strategy is Flower's own (``flwr.serverapp.strategy``);
this module only maps a name and a few knobs onto it, so the ServerApp can
offer ``strategy = "trimmed-mean"`` in the run config.

==============  =====================  =========================================
name            Flower class           robust to
==============  =====================  =========================================
fedavg          ``FedAvg``             nothing (one bad update moves the mean)
fedprox         ``FedProx``            nothing (adds the proximal term mu)
trimmed-mean    ``FedTrimmedAvg``      a fraction ``trim`` of extreme values per
                                       coordinate, at each end
median          ``FedMedian``          fewer than half the devices per coordinate
krum            ``Krum``               ``num_malicious`` devices (needs
                                       n > 2f + 2)
multikrum       ``MultiKrum``          as Krum, averages the ``num_selected``
                                       best-scored updates
==============  =====================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import (
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

STRATEGIES = ("fedavg", "fedprox", "trimmed-mean", "median", "krum", "multikrum")
_ALIASES = {
    "fedtrimmedavg": "trimmed-mean",
    "trimmed_mean": "trimmed-mean",
    "trimmedmean": "trimmed-mean",
    "fedmedian": "median",
    "multi-krum": "multikrum",
}


@dataclass(frozen=True)
class StrategySettings:
    """Knobs shared by every strategy; each one uses those that apply to it."""

    name: str = "fedavg"
    min_train_nodes: int = 1
    min_evaluate_nodes: int = 1
    min_available_nodes: int = 1
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    proximal_mu: float = 0.01  # fedprox
    trim: float = 0.2  # trimmed-mean: fraction cut at each end, in [0, 0.5)
    num_malicious: int = 1  # krum / multikrum
    num_selected: int = 0  # multikrum; 0 = n - num_malicious


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return key


AGGREGATION_WEIGHT = "aggregation-weight"


def build_strategy(settings: StrategySettings, num_train_nodes: int | None = None) -> Strategy:
    """The Flower strategy for ``settings.name``; validates robust-aggregation limits.

    ``num_train_nodes`` (the training devices in the census) lets Krum and
    MultiKrum check their precondition n > 2f + 2 up front, with a clear error
    instead of a silent non-robust result.
    """
    name = canonical_name(settings.name)
    common: dict[str, Any] = dict(
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=settings.min_train_nodes,
        min_evaluate_nodes=settings.min_evaluate_nodes,
        min_available_nodes=settings.min_available_nodes,
        # Uniform weights: no mechanism releases a device's exact example count.
        weighted_by_key=AGGREGATION_WEIGHT,
    )
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedprox":
        if settings.proximal_mu < 0:
            raise ValueError("fedprox: proximal_mu must be >= 0")
        return FedProx(proximal_mu=settings.proximal_mu, **common)
    if name == "trimmed-mean":
        if not 0.0 <= settings.trim < 0.5:
            raise ValueError(f"trimmed-mean: trim={settings.trim} must be in [0, 0.5)")
        return FedTrimmedAvg(beta=settings.trim, **common)
    if name == "median":
        return FedMedian(**common)
    f = settings.num_malicious
    if f < 0:
        raise ValueError(f"{name}: num_malicious must be >= 0")
    if num_train_nodes is not None and num_train_nodes <= 2 * f + 2:
        raise ValueError(
            f"{name} tolerates f={f} malicious devices only with more than 2f+2="
            f"{2 * f + 2} training devices; the census has {num_train_nodes}"
        )
    if name == "krum":
        return Krum(num_malicious_nodes=f, **common)
    selected = settings.num_selected or max(1, (num_train_nodes or f + 1) - f)
    return MultiKrum(num_malicious_nodes=f, num_nodes_to_select=selected, **common)


def describe(strategy: Strategy) -> str:
    """One line for the run log."""
    return type(strategy).__name__
