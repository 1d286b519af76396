"""What the coordinator's client-level releases guarantee a training device's subjects,
and against whom: central noise, distributed noise under SecAgg+, with and without
device sampling. Figures are checked against dp-accounting directly."""

from __future__ import annotations

import math

import pytest

from common.privacy.distributed_noise import SkellamShare
from common.privacy.person_level import (
    AGAINST_ALL_BUT_COORDINATOR,
    AGAINST_EVERYONE,
    AGAINST_MODEL_OBSERVERS,
    AGAINST_MODEL_OBSERVERS_SECAGG,
    AGAINST_NON_COLLUDING,
    PersonLevel,
    client_level,
    with_client_level,
)
from tests.independent_accountant import ledger_rdp_epsilon

DELTA = 1e-5


def _release(mechanism: str, sigma: float, q: float, epsilon: float = 0.0) -> dict:
    return {
        "event": "release", "mechanism": mechanism, "sigma": sigma, "q": q, "steps": 1,
        "delta": DELTA, "epsilon": epsilon, "device_id": "server",
    }  # fmt: skip


def _unprotected() -> PersonLevel:
    return PersonLevel(math.inf, DELTA, "clip", ("none",), AGAINST_EVERYONE)


def test_central_noise_holds_against_all_but_the_coordinator():
    releases = [_release("dp-fedavg", 1.2, 1.0)] * 4
    client = client_level(releases, DELTA)
    assert client is not None
    assert client.epsilon == pytest.approx(ledger_rdp_epsilon(releases, DELTA), abs=1e-3)
    assert client.against == AGAINST_ALL_BUT_COORDINATOR
    assert client.against_coordinator == math.inf


def test_central_noise_with_sampling_holds_only_against_model_observers():
    releases = [_release("dp-fedavg", 1.2, 0.25)] * 4
    client = client_level(releases, DELTA)
    assert client is not None
    assert client.against == AGAINST_MODEL_OBSERVERS
    assert client.epsilon == pytest.approx(ledger_rdp_epsilon(releases, DELTA), abs=1e-3)


def _skellam_release(q: float) -> dict:
    share = SkellamShare(
        noise_multiplier=1.1, clipping_norm=0.5, dimension=1700, clipping_range=16.0, threshold=3
    )
    release = share.release(3, q)
    return {
        **_release("dp-fedavg-skellam", release.effective_noise_multiplier, q),
        "accountant": release.parameters(),
    }


def test_distributed_noise_holds_against_the_coordinator_too():
    releases = [_skellam_release(1.0)] * 3
    client = client_level(releases, DELTA)
    assert client is not None
    assert client.against == AGAINST_NON_COLLUDING
    gaussian = ledger_rdp_epsilon(releases, DELTA)
    # Agarwal et al.'s correction puts the Skellam figure a little above the Gaussian one.
    assert gaussian <= client.epsilon <= gaussian * 1.01
    assert client.against_coordinator == client.epsilon
    person = with_client_level(_unprotected(), client)
    assert person.epsilon == client.epsilon and person.against_coordinator == client.epsilon
    assert "dp-fedavg-skellam" in person.mechanisms and person.unit == "subject"


def test_distributed_noise_with_sampling_claims_no_amplification_against_the_coordinator():
    releases = [_skellam_release(0.25)] * 3
    client = client_level(releases, DELTA)
    assert client is not None
    assert client.against == AGAINST_MODEL_OBSERVERS_SECAGG
    unsampled = ledger_rdp_epsilon([{**e, "q": 1.0} for e in releases], DELTA)
    assert unsampled <= client.against_coordinator <= unsampled * 1.01
    assert client.epsilon < client.against_coordinator - 1.0
    # The general subsampling bound is never below dp-accounting's Gaussian at that σ and q.
    assert client.epsilon >= ledger_rdp_epsilon(releases, DELTA)


def test_the_better_figure_leads_and_the_device_own_stays_against_the_coordinator():
    own = PersonLevel(3.0, DELTA, "subject", ("dp-sgd-subject",), AGAINST_EVERYONE)
    weak = client_level([_release("dp-fedavg", 0.5, 1.0)] * 5, DELTA)
    assert with_client_level(own, weak) == own  # client-level is worse: the device's stays
    strong = client_level([_release("dp-fedavg", 8.0, 1.0)], DELTA)
    assert strong is not None and strong.epsilon < 3.0
    person = with_client_level(own, strong)
    assert person.epsilon == strong.epsilon and person.against_coordinator == 3.0
    assert with_client_level(own, None) == own
    assert client_level([], DELTA) is None
