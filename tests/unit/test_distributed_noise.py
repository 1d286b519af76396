"""Distributed Skellam noise: the lattice, the shares, the accounting, the server's part."""

import math

import dp_accounting
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.common.secure_aggregation.quantization import quantize

from client.privacy_policy import noise_share_refusal
from client.secagg_client import noised_update
from common.node_config import NodeConfig
from common.privacy.distributed_noise import (
    SkellamRelease,
    SkellamShare,
    calibrate_skellam_noise,
    lattice_clipping_range,
    skellam_epsilon,
)
from common.privacy.ledger_audit import audit_chain
from common.run_config import RunConfig
from server.client_level_dp import ClientLevelDP
from server.privacy_ledger import ServerLedger
from server.secagg_round import SecAggSettings

C, D, THRESHOLD = 0.05, 1683, 4


def _share(z: float = 1.0, threshold: int = THRESHOLD) -> SkellamShare:
    return SkellamShare(z, C, D, lattice_clipping_range(C, z, threshold), threshold)


def _clipped(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    parts = (rng.normal(size=(3, 400)), rng.normal(size=(483,)))
    norm = math.sqrt(sum(float((p**2).sum()) for p in parts))
    return tuple((p * C / norm).astype(np.float32) for p in parts)


def test_the_lattice_range_is_a_power_of_two_with_room_for_the_tails():
    share = _share()
    assert math.log2(share.clipping_range).is_integer()
    assert share.clipping_range >= C * (1 + 14 / math.sqrt(THRESHOLD))
    assert share.truncation_probability(1000) < 1e-30
    # With the range at C (what SecAgg+ uses without noise), truncation is certain.
    assert SkellamShare(1.0, C, D, C, THRESHOLD).truncation_probability(1) == 1.0


def test_flower_quantizes_a_noised_update_to_exactly_the_devices_lattice_values():
    rng = np.random.default_rng(0)
    share = _share()
    update = _clipped(rng)
    noised = noised_update(update, share, rng)
    assert [a.dtype for a in noised] == [np.float32, np.float32]
    quantized = quantize(list(noised), share.clipping_range, share.quantization_range)
    for values, q in zip(noised, quantized):
        lattice = values.astype(np.float64) * share.scale
        assert np.array_equal(lattice, np.round(lattice))  # on the lattice
        assert np.array_equal(q, lattice.astype(np.int64) + share.quantization_range // 2)


def test_a_lattice_that_is_not_exact_is_refused():
    share = SkellamShare(1.0, C, D, 0.3, THRESHOLD)  # 0.3 is not a power of two
    with pytest.raises(RuntimeError, match="not exact"):
        noised_update(_clipped(np.random.default_rng(1)), share, np.random.default_rng(2))


def _sum_noise_std(shares: list[SkellamShare], seed: int = 0) -> float:
    """Per-coordinate std, in model units, of the sum of the shares minus the true sum."""
    rng = np.random.default_rng(seed)
    updates = [_clipped(rng) for _ in shares]
    noised = [noised_update(u, s, rng) for u, s in zip(updates, shares)]

    def flat_sum(vectors) -> np.ndarray:
        return sum(np.concatenate([a.astype(np.float64).ravel() for a in v]) for v in vectors)

    true, got = flat_sum(updates), flat_sum(noised)
    return float(np.std(got - true))


def test_threshold_shares_carry_the_target_noise_and_a_smaller_share_fails_the_check():
    share = _share()
    target = share.std_in_model_units(THRESHOLD)
    assert target == pytest.approx(1.0 * (C + math.sqrt(D) / share.scale), rel=1e-12)
    assert _sum_noise_std([share] * THRESHOLD) == pytest.approx(target, rel=0.1)
    # A device that adds a quarter of its share (as if the threshold were 4x larger):
    stingy = SkellamShare(1.0, C, D, share.clipping_range, THRESHOLD * 4)
    measured = _sum_noise_std([share] * (THRESHOLD - 1) + [stingy])
    assert measured != pytest.approx(target, rel=0.1)


def test_skellam_epsilon_is_the_gaussian_one_plus_a_small_correction():
    share = _share(z=1.2)
    release = share.release(THRESHOLD)
    assert release.effective_noise_multiplier == pytest.approx(1.2, rel=1e-9)
    epsilon = skellam_epsilon([release] * 10, 1e-5)
    accountant = dp_accounting.rdp.RdpAccountant(list(range(2, 257)))
    accountant.compose(dp_accounting.GaussianDpEvent(1.2), 10)
    gaussian = accountant.get_epsilon(1e-5)
    assert gaussian <= epsilon <= gaussian * (1 + 1e-3)
    # Theorem 3.5 at one order, by hand.
    mu, d1, d2, a = release.variance, release.l1_sensitivity, release.l2_sensitivity, 8
    by_hand = a * d2**2 / (2 * mu) + min(
        ((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu)
    )
    assert release.rdp([a])[0] == pytest.approx(by_hand, rel=1e-12)


def test_more_survivors_mean_more_noise_and_less_epsilon():
    share = _share()
    assert skellam_epsilon([share.release(5)], 1e-5) < skellam_epsilon([share.release(4)], 1e-5)
    with pytest.raises(ValueError, match="below the SecAgg\\+ threshold"):
        share.release(THRESHOLD - 1)


def test_calibration_is_the_smallest_z_within_the_target():
    def share_at(z: float) -> SkellamShare:
        return _share(z)

    z = calibrate_skellam_noise(4.0, 1e-5, 5, lambda z: share_at(z).release(THRESHOLD))
    at = share_at(z)
    assert skellam_epsilon([at.release(THRESHOLD)] * 5, 1e-5) <= 4.0
    below = share_at(z - 2e-3)
    assert skellam_epsilon([below.release(THRESHOLD)] * 5, 1e-5) > 4.0


def test_the_device_refuses_a_share_below_its_policy():
    node = NodeConfig(min_noise_multiplier=0.8)
    assert noise_share_refusal(node, 0.5).code == "noise-below-policy"
    assert noise_share_refusal(node, 1.0) is None
    strict = NodeConfig(allowed_mechanisms="dp-sgd")
    assert noise_share_refusal(strict, 1.0).code == "mechanism-not-allowed"


def _secure_dp(
    tmp_path, rounds: int = 3, target: float = 4.0, q: float = 0.0, population: int = 5
) -> ClientLevelDP:
    cfg = RunConfig(
        num_server_rounds=rounds,
        client_target_epsilon=target,
        client_clipping_norm=C,
        client_sampling_rate=q,
        secagg=True,
        secagg_num_shares=5,
        secagg_reconstruction_threshold=THRESHOLD,
    )
    settings = SecAggSettings(5, THRESHOLD, C, 60.0)
    return ClientLevelDP(cfg, population, ServerLedger(tmp_path), settings, dimension=D)


def test_the_server_adds_no_noise_to_a_secure_sum_and_accounts_the_shares(tmp_path):
    dp = _secure_dp(tmp_path)
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    share = dp._share_at(dp.noise_multiplier)
    new = dp.apply_secure(current, [np.full(4, 2.0)], n=4, server_round=1, share=share)
    np.testing.assert_array_equal(new["w"].numpy(), np.full(4, 2.0 / 5, np.float32))  # exact
    assert dp.skellam.epsilon() == pytest.approx(skellam_epsilon([share.release(4)], 1e-5))
    audit = audit_chain(tmp_path / "ledger" / "server.jsonl")
    assert audit.ok, audit.failures
    [entry] = [c.entry for c in audit.checks]
    assert entry["mechanism"] == "dp-fedavg-skellam" and "added no noise" in entry["note"]
    assert dp.as_dict()["noise"].startswith("distributed Skellam")
    with pytest.raises(RuntimeError, match="must come from the devices"):
        dp.apply_secure(current, [np.full(4, 2.0)], n=4, server_round=2, share=None)


def test_the_budget_check_assumes_the_least_noisy_sum_and_a_resume_replays_releases(tmp_path):
    dp = _secure_dp(tmp_path / "a", rounds=3)
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    share = dp._share_at(dp.noise_multiplier)
    for server_round in (1, 2, 3):
        dp.check_budget(server_round)
        current = dp.apply_secure(current, [np.ones(4)], THRESHOLD, server_round, share)
    assert 3.9 < dp.skellam.epsilon() <= 4.0
    with pytest.raises(Exception, match="round 4 would take client-level epsilon"):
        dp.check_budget(4)
    resumed = _secure_dp(tmp_path / "b", rounds=30)  # another plan: z must not change
    resumed.load_state_dict(dp.state_dict())
    assert resumed.noise_multiplier == dp.noise_multiplier
    assert resumed.skellam.epsilon() == pytest.approx(dp.skellam.epsilon(), rel=1e-12)
    assert isinstance(resumed.skellam.history[0], SkellamRelease)


def _sampled_secure_dp(tmp_path, q: float = 0.25) -> ClientLevelDP:
    return _secure_dp(tmp_path, q=q, population=400)


def test_a_sample_too_small_for_secagg_is_paid_in_delta_or_refused(tmp_path):
    dp = _sampled_secure_dp(tmp_path)
    # P(Binomial(400, 0.25) < 3), at the target's e^ε, per release.
    p = sum(math.comb(400, k) * 0.25**k * 0.75 ** (400 - k) for k in range(3))
    assert dp.shortfall_delta == pytest.approx((1 + math.exp(4.0)) * p, rel=1e-9)
    share = dp._share_at(dp.noise_multiplier)
    release = dp._least_noisy_release(share)
    assert release.truncation == pytest.approx(
        share.release(THRESHOLD, 0.25).truncation + dp.shortfall_delta, rel=1e-9, abs=1e-300
    )
    # 40 devices at q = 0.25: a round samples fewer than 3 about once in a thousand.
    with pytest.raises(ValueError, match=r"samples fewer than 3 with probability 0.00"):
        _secure_dp(tmp_path / "few", q=0.25, population=40)
    no_target = RunConfig(client_noise_multiplier=1.0, client_sampling_rate=0.25, secagg=True)
    with pytest.raises(ValueError, match="needs client-target-epsilon or client-epsilon-budget"):
        ClientLevelDP(
            no_target, 400, ServerLedger(tmp_path / "n"), SecAggSettings(5, 4, C, 60.0), D
        )


def _rewrite(path, change):
    """Re-sign nothing: an edited entry keeps its old signature (a forgery)."""
    import json

    lines = path.read_text().splitlines()
    entry = json.loads(lines[-1])
    change(entry)
    lines[-1] = json.dumps(entry, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")


def test_sampled_devices_under_secagg_are_accounted_with_amplification_and_audited(tmp_path):
    sampled = _sampled_secure_dp(tmp_path / "sampled")
    every = _secure_dp(tmp_path / "every", rounds=3)
    # Amplification lets far less noise meet the same target.
    assert sampled.noise_multiplier < 0.6 * every.noise_multiplier
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    share = sampled._share_at(sampled.noise_multiplier)
    for server_round in (1, 2, 3):
        sampled.check_budget(server_round)
        # 7 devices took part, but the release is accounted at the threshold's noise.
        current = sampled.apply_secure(current, [np.ones(4)], 7, server_round, share)
    at_threshold = sampled._least_noisy_release(
        share
    )  # the threshold's shares, at q, shortfall on δ
    assert at_threshold.variance == share.release(THRESHOLD).variance and at_threshold.q == 0.25
    assert sampled.skellam.epsilon() == pytest.approx(skellam_epsilon([at_threshold] * 3, 1e-5))
    assert 3.9 < sampled.skellam.epsilon() <= 4.0 + 1e-9
    server = tmp_path / "sampled" / "ledger" / "server.jsonl"
    audit = audit_chain(server)
    assert audit.ok, audit.failures
    entry = audit.checks[-1].entry
    assert entry["q"] == 0.25 and "q=0.25" in entry["accountant"]
    assert SkellamRelease.from_parameters(entry["accountant"]) == at_threshold
    # dp-accounting's subsampled Gaussian at the same σ is the floor, and it is below the claim.
    assert audit.checks[-1].rdp <= entry["epsilon"]


@pytest.mark.parametrize(
    "forgery,message",
    [
        (lambda e: e.update(epsilon=e["epsilon"] * 0.8), "the Skellam accountant gives"),
        (lambda e: e.update(q=0.05), "differs from the q=0.25"),
        (
            lambda e: e.update(accountant=e["accountant"].replace("q=0.25", "q=0.05")),
            "the Skellam accountant gives",
        ),
        (lambda e: e.update(accountant="skellam-rdp; variance=oops"), "must carry variance"),
    ],
)
def test_the_audit_fails_a_sampled_release_that_understates(tmp_path, forgery, message):
    dp = _sampled_secure_dp(tmp_path)
    current = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    share = dp._share_at(dp.noise_multiplier)
    for server_round in (1, 2):
        dp.apply_secure(current, [np.ones(4)], 7, server_round, share)
    server = tmp_path / "ledger" / "server.jsonl"
    _rewrite(server, forgery)
    audit = audit_chain(server)
    assert not audit.ok
    assert any(message in f for f in audit.failures), audit.failures
