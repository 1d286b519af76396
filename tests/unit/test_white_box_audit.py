"""The white-box empirical audit of the deployed DP-SGD setting: honest passes, broken fails."""

from __future__ import annotations

import numpy as np
import pytest

from common.privacy.accounting import epsilon_rdp
from common.privacy.empirical_audit import gdp_epsilon, gdp_mu, gdp_mu_lower_bound
from simulations.white_box_audit import DeployedSetting, WhiteBoxAuditConfig, run_white_box_audit

# The default run's device: σ 2.016, q 1/3, 6 steps a round, 12 rounds, δ 1e-5.
DEFAULT = DeployedSetting(2.016, 1 / 3, 6, 12, 1e-5, epsilon_rdp([(2.016, 1 / 3, 72)], 1e-5))


def test_gdp_epsilon_matches_known_values_and_is_monotone():
    from scipy.stats import norm

    # At the returned ε, Dong, Roth & Su's δ(ε) of 1-GDP is the δ asked for (ε ≈ 4.38).
    epsilon = gdp_epsilon(1.0, 1e-5)
    delta = norm.cdf(-epsilon + 0.5) - np.exp(epsilon) * norm.cdf(-epsilon - 0.5)
    assert delta == pytest.approx(1e-5, rel=1e-3) and epsilon == pytest.approx(4.38, abs=0.01)
    values = [gdp_epsilon(mu, 1e-5) for mu in (0.5, 1.0, 2.0, 4.0)]
    assert values == sorted(values) and gdp_epsilon(0.0, 1e-5) == 0.0


def test_mu_is_recovered_from_gaussian_scores():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(1.5, 1.0, 3000), rng.normal(0.0, 1.0, 3000)
    assert gdp_mu(inside, outside) == pytest.approx(1.5, abs=0.06)
    mu, lower = gdp_mu_lower_bound(inside, outside, 0.95, 200, rng)
    assert lower < mu and mu - lower < 0.1


@pytest.fixture(scope="module")
def audits():
    config = WhiteBoxAuditConfig(canaries=2000, guesses=500)
    honest = run_white_box_audit(DEFAULT, config)
    broken = run_white_box_audit(
        DEFAULT, WhiteBoxAuditConfig(canaries=2000, guesses=500, applied_noise_fraction=0.25)
    )
    return honest, broken


def test_the_honest_mechanism_stays_below_its_claim(audits):
    honest, _ = audits
    assert honest.recomputed_epsilon == pytest.approx(DEFAULT.claimed_epsilon)
    assert 0.5 < honest.mu_estimate < 2.0  # the canaries are seen: the test has power
    assert honest.epsilon_lower_bound < DEFAULT.claimed_epsilon
    assert not honest.refutes_claim


def test_a_device_applying_a_quarter_of_its_recorded_noise_is_caught(audits):
    honest, broken = audits
    assert broken.applied_sigma == pytest.approx(DEFAULT.sigma / 4)
    assert broken.gdp_epsilon_lower_bound > DEFAULT.claimed_epsilon
    assert broken.refutes_claim
    assert broken.one_run_epsilon_lower_bound > honest.one_run_epsilon_lower_bound
    # The assumption-free bound cannot certify more than its ceiling with these canaries.
    assert broken.one_run_epsilon_lower_bound <= broken.one_run_ceiling + 1e-9


def test_the_setting_is_read_from_a_chain():
    entries = [
        {"event": "train", "mechanism": "dp-sgd", "sigma": 2.0, "q": 0.25, "steps": 4,
         "delta": 1e-5, "epsilon": e, "device_id": "d"}
        for e in (1.0, 2.0, 3.0)
    ]  # fmt: skip
    setting = DeployedSetting.from_entries(entries)
    assert (setting.sigma, setting.sample_rate, setting.steps_per_round, setting.rounds) == (
        2.0, 0.25, 4, 3,
    )  # fmt: skip
    assert setting.claimed_epsilon == 3.0
    with pytest.raises(ValueError, match="mixes settings"):
        DeployedSetting.from_entries(entries + [{**entries[0], "sigma": 1.0}])
