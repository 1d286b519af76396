"""The device's DP-SGD accountant history, kept in the ClientApp's ``context.state``.

The history is stored as three parallel lists (sigma, q, steps) in a
ConfigRecord because records hold flat values only. The calibrated noise
multiplier is stored too: it is chosen once for the whole planned run and must
not drift from round to round.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context

from common.privacy.accounting import Segment

_STATE_KEY = "fedmer-dp-accountant"


def load_history(context: Context) -> list[Segment]:
    """The accountant history before this round (empty on the first round)."""
    record = context.state.config_records.get(_STATE_KEY)
    if record is None:
        return []
    return [
        (float(s), float(q), int(n))
        for s, q, n in zip(record["sigma"], record["q"], record["steps"], strict=True)
    ]


def save_history(context: Context, history: list[Segment], sigma: float) -> None:
    """Persist the cumulative history and the run's noise multiplier."""
    context.state.config_records[_STATE_KEY] = ConfigRecord(
        {
            "sigma": [float(s) for s, _, _ in history],
            "q": [float(q) for _, q, _ in history],
            "steps": [int(n) for _, _, n in history],
            "calibrated-sigma": float(sigma),
        }
    )


def stored_sigma(context: Context) -> float | None:
    """The noise multiplier chosen in an earlier round, if any."""
    record = context.state.config_records.get(_STATE_KEY)
    return None if record is None else float(record["calibrated-sigma"])
