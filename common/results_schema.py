"""The one ``results.json`` schema, for every mode and transport.

The ServerApp writes it (``server/run_results.py``) after every round of a
federated run, whatever the transport; the centralized baseline of the
protocol harness writes the same document with no privacy spend. Tooling
(``fedmer evaluate``, ``fedmer compare``, tests) validates what it reads with
:func:`validate_results`, so a change to the format is caught where it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESULTS_SCHEMA = "fedmer.results/1"
# The files a run folder holds, whoever wrote it.
RESULTS_FILE = "results.json"
MODEL_FILE = "final_model.pt"
# The preprocessing the devices used (public settings, no data): what
# ``fedmer predict`` and ``fedmer export`` must apply to new clips.
PREPROCESSING_FILE = "preprocessing.json"

_TOP = {
    "schema": str,
    "config": dict,
    "classes": list,
    "rounds": list,
    "final": dict,
    "privacy": dict,
    "devices": dict,
}
_ROUND = {
    "round": int,
    "uf1": float,
    "uar": float,
    "accuracy": float,
    "confusion": list,
    "heldout_devices": dict,
    "epsilon": float,
    "trained": list,
    "declined": dict,
    "failed": dict,
}
_FINAL = {"uf1": float, "uar": float, "accuracy": float, "confusion": list, "heldout_devices": dict}
_PRIVACY = {"unit": str, "accountant": str, "worst_epsilon": float, "devices": dict}


class ResultsSchemaError(ValueError):
    """A results document does not fit the schema; the message names the key."""


def validate_results(doc: Mapping[str, Any]) -> None:
    """Raise :class:`ResultsSchemaError` unless ``doc`` is a fedmer results document."""
    _check(doc, _TOP, "results")
    if doc["schema"] != RESULTS_SCHEMA:
        raise ResultsSchemaError(f"results: schema {doc['schema']!r} is not {RESULTS_SCHEMA!r}")
    for i, entry in enumerate(doc["rounds"]):
        _check(entry, _ROUND, f"results.rounds[{i}]")
    if doc["rounds"]:
        _check(doc["final"], _FINAL, "results.final")
    _check(doc["privacy"], _PRIVACY, "results.privacy")
    size = len(doc["classes"])
    confusion = doc["final"].get("confusion") or []
    if doc["rounds"] and (len(confusion) != size or any(len(r) != size for r in confusion)):
        raise ResultsSchemaError(f"results.final.confusion is not {size}x{size}")


def _check(value: Any, keys: Mapping[str, type], where: str) -> None:
    if not isinstance(value, Mapping):
        raise ResultsSchemaError(f"{where} is a {type(value).__name__}, not an object")
    for key, kind in keys.items():
        if key not in value:
            raise ResultsSchemaError(f"{where} lacks {key!r}")
        item = value[key]
        ok = (
            isinstance(item, (int, float)) and not isinstance(item, bool)
            if kind is float
            else isinstance(item, kind)
        )
        if not ok:
            raise ResultsSchemaError(
                f"{where}.{key} is a {type(item).__name__}, not a {kind.__name__}"
            )
