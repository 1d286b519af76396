import math

import pytest

from common.privacy.accounting import epsilon_rdp
from common.privacy.group_privacy import group_delta, subject_level

HISTORY = [(1.5, 0.04, 2250)]


def test_one_clip_per_subject_is_the_sample_level_guarantee():
    result = subject_level(HISTORY, 1, 1e-5)
    assert result.epsilon == pytest.approx(7.329, abs=1e-3)
    assert result.sample_delta == 1e-5


def test_subject_level_bound_satisfies_the_group_privacy_theorem():
    result = subject_level([(3.0, 0.04, 2250)], 3, 1e-5)
    sample_eps = epsilon_rdp([(3.0, 0.04, 2250)], result.sample_delta)
    assert result.epsilon == pytest.approx(3 * sample_eps)
    assert group_delta(3, sample_eps, result.sample_delta) <= 1e-5
    # It costs far more than k times the sample-level figure at the same delta.
    assert result.epsilon > 3 * epsilon_rdp([(3.0, 0.04, 2250)], 1e-5)


def test_many_clips_at_high_epsilon_give_no_finite_subject_level_bound():
    # 9 clips of one subject at sample-level eps ~ 12.7: group privacy is vacuous.
    assert math.isinf(subject_level([(1.0, 1 / 3, 24)], 9, 1e-5).epsilon)
