"""The per-subject privacy table of a simulated run.

The coordinator knows devices, not people: ``results.json``'s
``privacy.person_level`` gives each device's guarantee, which every subject on
that device shares. The simulation harness, which placed the subjects on the
devices, expands it to one row per subject, training and held out alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulations.device_folders import SimulatedDevice


def subject_rows(devices: Sequence[SimulatedDevice], results: dict[str, Any]) -> list[dict]:
    """One row per subject: device, role, mechanisms, ε, δ and against whom."""
    people = results.get("privacy", {}).get("person_level", {})
    delta = results.get("config", {}).get("delta")
    rows = []
    for device in devices:
        guarantee = people.get(device.device_id)
        for subject in device.subjects or (device.subject,):
            row = {"subject": subject, "device": device.device_id, "role": device.role}
            if guarantee is None:
                # Nothing of theirs was released: no spend at all.
                row.update(epsilon=0.0, delta=delta, mechanisms=[], against="")
            else:
                row.update({k: guarantee[k] for k in ("epsilon", "delta", "mechanisms", "against")})
            rows.append(row)
    return rows
