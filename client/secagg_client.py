"""The device side of SecAgg+: the one place that knows Flower's SecAgg+ mod.

In SecAgg+ mode (Flower 1.41 supports it only through the legacy workflow)
the server's train message carries ``fitins.parameters`` and expects a
``fitres.*`` reply (:class:`common.wire.LegacyTrainReply`). The device then
sends its *clipped update* (new weights minus the global weights, L2 norm at
most the client clipping norm), weighted 1, so that the masked sum the server
unmasks is exactly the sum that client-level DP-FedAvg adds its noise to.
Every coordinate of a clipped update lies in [-C, C], which is why the server
sets SecAgg+'s quantization ``clipping_range`` to C when there is no
client-level noise: nothing is truncated.

With client-level noise (``client-noise-multiplier`` > 0 in the instruction)
the device adds its own share of it, Skellam noise on SecAgg+'s lattice, to
its clipped update before the mod masks it
(:mod:`common.privacy.distributed_noise`): the coordinator never holds an
un-noised sum. The lattice (range, levels, threshold) is read from the mod's
own state, the values Flower will actually quantize with.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
)
from torch import nn

from common.privacy.client_level import clip_update
from common.privacy.distributed_noise import SkellamShare, randomized_round, sample_skellam
from common.wire import TrainInstruction

# A device refuses a lattice whose chance of clipping its noise exceeds this
# (the server's range makes it below 1e-30 at any sensible z).
MAX_TRUNCATION = 1e-12


def secagg_when_requested_mod(
    msg: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Run Flower's ``secaggplus_mod`` only for messages of the SecAgg+ protocol."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def clipped_update(
    model: nn.Module, request: TrainInstruction, clipping_norm: float
) -> tuple[np.ndarray, ...]:
    """The trained model's update from the global weights, clipped to ``clipping_norm``."""
    new = [t.detach().cpu().numpy() for t in model.state_dict().values()]
    update = [n - g for n, g in zip(new, request.global_ndarrays(), strict=True)]
    return tuple(clip_update(update, clipping_norm))


def skellam_share(
    context: Context, noise_multiplier: float, clipping_norm: float, dimension: int
) -> SkellamShare:
    """This round's noise share, on the lattice this device's SecAgg+ mod was set up with."""
    state = context.state.config_records.get(RECORD_KEY_STATE)
    if state is None or not state.get("threshold"):
        raise RuntimeError("distributed noise needs the SecAgg+ set-up, and none was received")
    return SkellamShare(
        noise_multiplier=noise_multiplier,
        clipping_norm=clipping_norm,
        dimension=dimension,
        clipping_range=float(state["clipping_range"]),  # type: ignore[arg-type]
        threshold=int(state["threshold"]),  # type: ignore[call-overload]
        quantization_range=int(state["target_range"]),  # type: ignore[call-overload]
    )


def noised_update(
    update: tuple[np.ndarray, ...], share: SkellamShare, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """The clipped update, rounded onto the lattice, plus this device's Skellam share.

    Returned as lattice values ``k / scale`` in the update's dtype; the
    function checks that Flower's quantization maps each of them back to
    exactly ``k`` (no second rounding, no clipping), and raises otherwise:
    noise that Flower altered would no longer be the accounted mechanism.
    Whether the lattice leaves room for the noise at all (``MAX_TRUNCATION``)
    is the caller's policy check, signed as a refusal before any training.
    """
    flat = np.concatenate([np.asarray(u, dtype=np.float64).ravel() for u in update])
    lattice = randomized_round(flat * share.scale, rng) + sample_skellam(
        share.variance, flat.size, rng
    )
    half = share.quantization_range // 2
    if np.any(np.abs(lattice) > half):
        raise RuntimeError("the noised update left SecAgg+'s range; this round is skipped")
    out, start = [], 0
    for u in update:
        k = lattice[start : start + u.size].reshape(u.shape)
        start += u.size
        values = (k / share.scale).astype(u.dtype)
        requantized = (values + u.dtype.type(share.clipping_range)) * u.dtype.type(share.scale)
        if not np.array_equal(requantized, (k + half).astype(requantized.dtype)):
            raise RuntimeError(
                "the SecAgg+ lattice is not exact in this dtype (clipping_range must be a "
                "power of two); the noise would be re-rounded by the mod"
            )
        out.append(values)
    return tuple(out)
