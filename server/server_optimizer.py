"""Server optimisers for DP-FedAvg: momentum or Adam on the noised mean update.

The noised mean update is a private release; whatever the server computes
from it afterwards is post-processing and costs no privacy (Reddi et al.
2021, "Adaptive Federated Optimization"; McMahan et al. 2018 use server
momentum for DP-FedAvg). Momentum averages the Gaussian noise of successive
rounds away while the signal, which points the same way round after round,
adds up.

``sgd`` with learning rate 1 is plain FedAvg: new = current + mean update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Adam's second-moment decay and its adaptivity τ: the FedAdam paper's choices
# (τ = 1e-3 keeps a coordinate's step from exploding where its updates are tiny).
ADAM_BETA2 = 0.99
ADAM_TAU = 1e-3


class ServerOptimizer:
    """Turns each round's (noised) mean update into the step the global model takes."""

    def __init__(self, name: str, learning_rate: float, momentum: float) -> None:
        if name not in ("sgd", "momentum", "adam"):
            raise ValueError(f"server optimiser {name!r} must be sgd, momentum or adam")
        self.name, self.learning_rate, self.momentum = name, learning_rate, momentum
        self._first: list[np.ndarray] = []
        self._second: list[np.ndarray] = []
        self.steps = 0

    def step(self, mean_update: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The step to add to the global weights for this round's mean update."""
        update = [np.asarray(u, dtype=np.float64) for u in mean_update]
        self.steps += 1
        if self.name == "sgd":
            return [self.learning_rate * u for u in update]
        if not self._first:
            self._first = [np.zeros_like(u) for u in update]
            self._second = [np.zeros_like(u) for u in update]
        if self.name == "momentum":
            self._first = [self.momentum * m + u for m, u in zip(self._first, update, strict=True)]
            return [self.learning_rate * m for m in self._first]
        beta1 = self.momentum
        self._first = [
            beta1 * m + (1 - beta1) * u for m, u in zip(self._first, update, strict=True)
        ]
        self._second = [
            ADAM_BETA2 * v + (1 - ADAM_BETA2) * u * u
            for v, u in zip(self._second, update, strict=True)
        ]
        first_hat = 1 - beta1**self.steps
        second_hat = 1 - ADAM_BETA2**self.steps
        return [
            self.learning_rate * (m / first_hat) / (np.sqrt(v / second_hat) + ADAM_TAU)
            for m, v in zip(self._first, self._second, strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs, so a resumed run continues the same trajectory."""
        return {
            "name": self.name,
            "steps": self.steps,
            "first": [m.tolist() for m in self._first],
            "second": [v.tolist() for v in self._second],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(
                f"the checkpoint's server optimiser is {state.get('name')!r}, "
                f"the run config's is {self.name!r}"
            )
        self.steps = int(state.get("steps", 0))
        self._first = [np.asarray(m, dtype=np.float64) for m in state.get("first", [])]
        self._second = [np.asarray(v, dtype=np.float64) for v in state.get("second", [])]
