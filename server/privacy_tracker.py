"""The server's view of each device's cumulative sample-level privacy spend.

Devices report cumulative epsilon (their accountant never resets), so the
latest report per device is its total; the run's figure is the worst device.
Devices that sat out a round keep their previous total.

Alongside the RDP figure it keeps the device's PRV second opinion. Devices
report no clip counts (none is released by a DP mechanism), so the
coordinator cannot convert a clip-level ε to a subject-level one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from common.wire import TrainMetrics


@dataclass(frozen=True)
class DevicePrivacy:
    """Sample-level DP-SGD accounting one device reported after its last round."""

    device_id: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon: float
    epsilon_prv: float
    last_round: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivacyTracker:
    def __init__(self) -> None:
        self._devices: dict[str, DevicePrivacy] = {}

    def record(self, device_id: str, server_round: int, metrics: TrainMetrics) -> None:
        epsilon = metrics.epsilon
        previous = self._devices.get(device_id)
        if previous is not None and epsilon + 1e-9 < previous.epsilon:
            raise ValueError(
                f"device {device_id} reported epsilon {epsilon:.4f} in round "
                f"{server_round}, below its earlier {previous.epsilon:.4f}: its "
                "accountant was reset, so its reports cannot be trusted"
            )
        self._devices[device_id] = DevicePrivacy(
            device_id=device_id,
            noise_multiplier=metrics.noise_multiplier,
            sample_rate=metrics.sample_rate,
            steps=metrics.total_steps,
            delta=metrics.delta,
            epsilon=epsilon,
            epsilon_prv=metrics.epsilon_prv,
            last_round=server_round,
        )

    def restore(self, devices: dict[str, dict[str, object]]) -> None:
        """Reload the per-device records of a checkpointed run (see ``as_dict``)."""
        fields = set(DevicePrivacy.__dataclass_fields__)
        for device_id, record in devices.items():
            self._devices[device_id] = DevicePrivacy(
                **{k: v for k, v in record.items() if k in fields}  # type: ignore[arg-type]
            )

    def worst_epsilon(self) -> float:
        return max((d.epsilon for d in self._devices.values()), default=0.0)

    def as_dict(self) -> dict[str, dict[str, float | int | str]]:
        return {k: v.as_dict() for k, v in sorted(self._devices.items())}
