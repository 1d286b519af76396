import math

import pytest

from common.privacy.empirical_audit import epsilon_lower_bound, p_value


def test_lower_bound_inverts_the_p_value_at_95_percent():
    eps = epsilon_lower_bound(m=75, r=20, v=20, delta=1e-5, confidence=0.95)
    # 20 of 20 correct: (e^eps / (1 + e^eps))^20 = 0.05 without the delta term;
    # the delta term (2 m delta) can only lower the bound, slightly.
    without_delta = math.log(0.05 ** (1 / 20) / (1 - 0.05 ** (1 / 20)))
    assert without_delta * 0.995 < eps <= without_delta
    assert p_value(75, 20, 20, eps, 1e-5) == pytest.approx(0.05, rel=1e-3)
    assert epsilon_lower_bound(m=75, r=20, v=10, delta=1e-5, confidence=0.95) == 0.0
