import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from common.run_config import RunConfig
from server.client_level_dp import ClientLevelDP
from server.privacy_ledger import ServerLedger
from server.server_optimizer import ADAM_BETA2, ADAM_TAU, ServerOptimizer


def test_sgd_at_rate_one_is_plain_fedavg():
    step = ServerOptimizer("sgd", 1.0, 0.9).step([np.array([0.5, -1.0])])
    np.testing.assert_allclose(step[0], [0.5, -1.0])


def test_momentum_accumulates_a_consistent_direction():
    opt = ServerOptimizer("momentum", 0.5, 0.9)
    steps = [opt.step([np.array([1.0])])[0][0] for _ in range(3)]
    # v1 = 1, v2 = 1.9, v3 = 2.71; step = 0.5 v.
    assert steps == pytest.approx([0.5, 0.95, 1.355])


def test_adam_matches_its_definition():
    opt = ServerOptimizer("adam", 0.1, 0.9)
    g1, g2 = np.array([2.0]), np.array([-1.0])
    opt.step([g1])
    got = opt.step([g2])[0][0]
    m = 0.9 * (0.1 * 2.0) + 0.1 * -1.0
    v = ADAM_BETA2 * ((1 - ADAM_BETA2) * 4.0) + (1 - ADAM_BETA2) * 1.0
    want = 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - ADAM_BETA2**2)) + ADAM_TAU)
    assert got == pytest.approx(want)


def test_momentum_averages_dp_noise_away_where_sgd_does_not():
    """The reason it is there: over rounds, the noise cancels and the signal adds up."""
    rng = np.random.default_rng(0)
    signal = np.full(2000, 0.01)
    plain, heavy = ServerOptimizer("sgd", 1.0, 0.0), ServerOptimizer("momentum", 0.1, 0.9)
    for _ in range(40):
        noisy = [signal + rng.normal(0, 0.05, 2000)]
        last_plain, last_heavy = plain.step(noisy)[0], heavy.step(noisy)[0]
    snr = [float(np.mean(s) / np.std(s)) for s in (last_plain, last_heavy)]
    assert snr[1] > 2 * snr[0]


def test_a_resumed_run_continues_the_optimiser_state(tmp_path):
    cfg = RunConfig(num_server_rounds=3, client_noise_multiplier=1e-9, server_optimizer="momentum")
    dp = ClientLevelDP(cfg, population=1, ledger=ServerLedger(tmp_path / "a"))
    current = ArrayRecord({"w": Array(np.zeros(2, np.float32))})
    current = dp.apply(current, [np.ones(2)], n=1, server_round=1)
    resumed = ClientLevelDP(cfg, population=1, ledger=ServerLedger(tmp_path / "b"))
    resumed.load_state_dict(dp.state_dict())
    after = resumed.apply(current, [np.ones(2)], n=1, server_round=2)
    # v2 = 0.9 * 1 + 1 = 1.9: the velocity survived the resume.
    np.testing.assert_allclose(after["w"].numpy(), 1.0 + 1.9, rtol=1e-5)
    with pytest.raises(ValueError, match="server-optimizer='nesterov' must be one of"):
        RunConfig(server_optimizer="nesterov")
