"""Zhu & Wang's general Poisson-subsampling bound, checked on the one mechanism
whose subsampled RDP dp-accounting computes exactly: the Gaussian."""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting.rdp.rdp_privacy_accountant import _compute_rdp_poisson_subsampled_gaussian

from common.privacy.subsampled_rdp import poisson_subsampled_rdp

ORDERS = np.arange(2, 129)


@pytest.mark.parametrize("sigma,q", [(0.8, 0.1), (1.1, 0.25), (2.0, 0.5), (4.0, 0.9)])
def test_the_bound_is_never_below_the_exact_subsampled_gaussian(sigma, q):
    bound = poisson_subsampled_rdp(ORDERS / (2 * sigma**2), q)
    exact = _compute_rdp_poisson_subsampled_gaussian(q, sigma, ORDERS)
    assert np.all(bound >= exact * (1 - 1e-9))
    # ... and it amplifies: below the unsampled RDP, far below at a small q.
    unsampled = ORDERS / (2 * sigma**2)
    assert np.all(bound <= unsampled + 1e-12)
    if q <= 0.5:
        assert bound[8] < 0.7 * unsampled[8]


def test_the_bound_stays_close_to_the_exact_figure_where_epsilon_is_decided():
    sigma, q = 1.1, 0.25
    bound = poisson_subsampled_rdp(ORDERS / (2 * sigma**2), q)
    exact = _compute_rdp_poisson_subsampled_gaussian(q, sigma, ORDERS)
    # The factor 3 of the general bound costs at the low orders, little above.
    assert np.all(bound[10:40] <= exact[10:40] * 1.1)


def test_q_one_is_the_base_mechanism_and_q_zero_reveals_nothing():
    base = ORDERS / 2.0
    assert np.array_equal(poisson_subsampled_rdp(base, 1.0), base)
    assert np.all(poisson_subsampled_rdp(base, 0.0) == 0)
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        poisson_subsampled_rdp(base, 1.5)


def test_the_bound_grows_with_q_and_never_exceeds_the_base():
    base = ORDERS / (2 * 1.3**2)
    previous = np.zeros_like(base)
    for q in (0.05, 0.2, 0.5, 0.8, 0.99):
        bound = poisson_subsampled_rdp(base, q)
        assert np.all(bound >= previous - 1e-12) and np.all(bound <= base + 1e-12)
        previous = bound
