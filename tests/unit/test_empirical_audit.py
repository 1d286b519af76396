import math

import numpy as np
import pytest

from common.privacy.empirical_audit import auc, epsilon_lower_bound, p_value, tpr_at_fpr
from simulations.empirical_audit import EmpiricalAuditConfig, dirac_canaries, run_empirical_audit


def test_lower_bound_inverts_the_p_value_at_95_percent():
    eps = epsilon_lower_bound(m=75, r=20, v=20, delta=1e-5, confidence=0.95)
    # 20 of 20 correct: (e^eps / (1 + e^eps))^20 = 0.05 without the delta term;
    # the delta term (2 m delta) can only lower the bound, slightly.
    without_delta = math.log(0.05 ** (1 / 20) / (1 - 0.05 ** (1 / 20)))
    assert without_delta * 0.995 < eps <= without_delta
    assert p_value(75, 20, 20, eps, 1e-5) == pytest.approx(0.05, rel=1e-3)
    assert epsilon_lower_bound(m=75, r=20, v=10, delta=1e-5, confidence=0.95) == 0.0


def test_auc_and_tpr_at_low_fpr():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert tpr_at_fpr(np.array([5.0, 0.5]), np.array([1.0, 2.0, 3.0]), 1e-3) == 0.5


def test_canaries_are_distinct_one_per_channel_and_cell():
    canaries = dirac_canaries(5.0)
    assert canaries.shape == (75, 3, 28, 28)
    assert len({c.tobytes() for c in canaries}) == 75


@pytest.fixture(scope="module")
def audits():
    return {
        "dp": run_empirical_audit(EmpiricalAuditConfig(target_epsilon=8.0)),
        "baseline": run_empirical_audit(EmpiricalAuditConfig(target_epsilon=0.0)),
    }


def test_dp_training_stays_below_its_claim_and_the_baseline_shows_power(audits):
    dp, baseline = audits["dp"], audits["baseline"]
    assert dp.claimed_epsilon == pytest.approx(8.0, abs=0.05)
    assert dp.epsilon_lower_bound < dp.claimed_epsilon
    assert math.isinf(baseline.claimed_epsilon)
    # Without DP the attack guesses (nearly) every canary right: 19/20 already
    # certifies eps > 1.28; the ceiling with 75 canaries is 1.82 (20/20).
    assert baseline.epsilon_lower_bound > 1.2
    assert baseline.epsilon_lower_bound > dp.epsilon_lower_bound + 0.4
    assert baseline.auc > dp.auc
