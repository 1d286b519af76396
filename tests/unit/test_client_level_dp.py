import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.serverapp.exception import PrivacyBudgetExhausted

from common.privacy.client_level import (
    ClientLevelAccountant,
    add_sum_noise,
    calibrate_client_noise,
    clip_update,
    update_norm,
)
from common.privacy.ledger_audit import audit_chain
from common.run_config import RunConfig
from server.client_level_dp import ClientLevelDP
from server.privacy_ledger import ServerLedger
from tests.independent_accountant import rdp_epsilon


def test_clipping_bounds_the_norm_and_keeps_small_updates():
    big = [np.full((10,), 3.0, np.float32), np.full((2, 2), -4.0, np.float32)]
    clipped = clip_update(big, 1.0)
    assert update_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    assert np.allclose(clipped[0] / clipped[0][0], 1.0)  # direction kept
    small = [np.full((3,), 0.1, np.float32)]
    assert np.array_equal(clip_update(small, 1.0)[0], small[0])


def test_noise_on_the_sum_has_std_z_times_c_over_n():
    rng = np.random.default_rng(0)
    mean = add_sum_noise(
        [np.zeros(200_000)], denominator=4, noise_multiplier=2.0, clipping_norm=0.5, rng=rng
    )
    assert np.std(mean[0]) == pytest.approx(2.0 * 0.5 / 4, rel=0.01)


def test_client_level_epsilon_composes_without_amplification():
    z = calibrate_client_noise(4.0, 1e-5, rounds=5)
    accountant = ClientLevelAccountant(z, 1e-5, budget=4.0)
    for _ in range(5):
        assert not accountant.would_exceed()
        epsilon = accountant.record_release()
    # q = 1: every device takes part every round; no sampling amplification claimed.
    assert epsilon == pytest.approx(rdp_epsilon([(z, 1.0, 5)], 1e-5), rel=1e-6)
    assert 3.9 < epsilon <= 4.0
    assert accountant.would_exceed()


def test_server_stops_with_privacy_budget_exhausted_and_ledgers_each_release(tmp_path):
    cfg = RunConfig(num_server_rounds=2, client_target_epsilon=3.0, client_clipping_norm=1.0)
    dp = ClientLevelDP(cfg, population=3, ledger=ServerLedger(tmp_path))
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    for server_round in (1, 2):
        dp.check_budget(server_round)
        current = dp.apply(current, [np.ones(4)], n=3, server_round=server_round)
    with pytest.raises(PrivacyBudgetExhausted, match="round 3 would take client-level epsilon"):
        dp.check_budget(3)
    audit = audit_chain(tmp_path / "ledger" / "server.jsonl")
    assert audit.ok, audit.failures
    assert [c.entry["event"] for c in audit.checks] == ["release", "release"]
    assert audit.spent() == pytest.approx(dp.accountant.epsilon())
    assert dp.as_dict()["sampling"].startswith("no amplification")


def test_the_mean_uses_the_fixed_denominator_not_the_contributors(tmp_path):
    """Dropouts do not change the divisor: it is W, the expected participants."""
    cfg = RunConfig(num_server_rounds=2, client_noise_multiplier=1e-9, client_clipping_norm=1.0)
    dp = ClientLevelDP(cfg, population=4, ledger=ServerLedger(tmp_path))
    current = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
    # Two of the four expected devices contributed updates summing to 2.
    new = dp.apply(current, [np.full(3, 2.0)], n=2, server_round=1)
    np.testing.assert_allclose(new["w"].numpy(), 0.5, atol=1e-6)  # 2 / W=4, not 2 / n=2


def test_a_resume_keeps_z_and_replays_each_release_at_its_own_sigma(tmp_path):
    first = RunConfig(num_server_rounds=3, client_target_epsilon=6.0, client_clipping_norm=1.0)
    dp = ClientLevelDP(first, population=5, ledger=ServerLedger(tmp_path / "a"))
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    for server_round in (1, 2):
        current = dp.apply(current, [np.ones(4)], n=5, server_round=server_round)
    z, spent = dp.noise_multiplier, dp.accountant.epsilon()
    # The resumed run asks for many more rounds: a fresh calibration would pick a larger z.
    resumed_cfg = first.replace(num_server_rounds=30)
    fresh = ClientLevelDP(resumed_cfg, population=5, ledger=ServerLedger(tmp_path / "b"))
    assert fresh.noise_multiplier > z
    fresh.load_state_dict(dp.state_dict())
    assert fresh.noise_multiplier == z and fresh.denominator == 5
    assert fresh.accountant.epsilon() == pytest.approx(spent, rel=1e-9)
    # An accountant written independently of fedmer's agrees, under add/remove of one device.
    assert spent == pytest.approx(rdp_epsilon([(z, 1.0, 2)], 1e-5), abs=1e-3)


def test_device_sampling_is_accounted_with_amplification_and_calibrated_for_it(tmp_path):
    """q = 0.25: the Poisson-subsampled Gaussian, as an independent accountant computes it."""
    cfg = RunConfig(num_server_rounds=4, client_target_epsilon=4.0, client_sampling_rate=0.25)
    dp = ClientLevelDP(cfg, population=40, ledger=ServerLedger(tmp_path))
    z = dp.noise_multiplier
    # Amplification lets the same target be met with less noise than q = 1 needs.
    assert z < calibrate_client_noise(4.0, 1e-5, rounds=4)
    assert dp.denominator == pytest.approx(10.0)  # W = q N, fixed before any round
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    for server_round in range(1, 5):
        dp.check_budget(server_round)
        current = dp.apply(current, [np.ones(4)], n=10, server_round=server_round)
    spent = dp.accountant.epsilon()
    assert spent == pytest.approx(rdp_epsilon([(z, 0.25, 4)], 1e-5), abs=1e-3)
    assert 3.9 < spent <= 4.0
    # Claiming q = 0.25 matters: the same σ without amplification is far above the target.
    assert rdp_epsilon([(z, 1.0, 4)], 1e-5) > 2 * spent
    entries = audit_chain(tmp_path / "ledger" / "server.jsonl")
    assert [c.entry["q"] for c in entries.checks] == [0.25] * 4
    assert "Poisson sampling of devices at q = 0.25" in dp.as_dict()["sampling"]


def test_the_sample_is_poisson_and_a_round_nobody_answered_is_still_released(tmp_path):
    cfg = RunConfig(num_server_rounds=2, client_noise_multiplier=1.0, client_sampling_rate=0.3)
    dp = ClientLevelDP(cfg, population=1000, ledger=ServerLedger(tmp_path))
    sizes = [len(dp.sample(range(1000))) for _ in range(20)]
    # Binomial(1000, 0.3): mean 300, sd 14.5; a fixed-size or seeded sample would fail.
    assert 270 < np.mean(sizes) < 330 and len(set(sizes)) > 5
    current = ArrayRecord({"w": Array(np.zeros(10_000, np.float32))})
    new = dp.apply(current, None, n=0, server_round=1)
    # Noise alone, std z C / W = 1 / 300: the release happens, whoever took part.
    assert np.std(new["w"].numpy()) == pytest.approx(1.0 / 300, rel=0.05)
    assert dp.accountant.releases == 1


def test_the_sampling_rate_must_be_a_probability():
    with pytest.raises(ValueError, match=r"client-sampling-rate=1.5 must be in \[0, 1\]"):
        RunConfig(client_sampling_rate=1.5)
