"""fedmer's Flower ServerApp: FedAvg over DP-SGD devices, held-out evaluation.

After every round it prints one progress line, and writes ``results.json``,
the global model and the round plot to the run folder, so the latest completed
round is always on disk. Optional client-level DP-FedAvg and SecAgg+ come from
the run config; the privacy ledger is kept under ``<run>/ledger/``. When the
client-level budget would be exceeded the run stops cleanly
(``PrivacyBudgetExhausted``), keeping the last completed round.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.exception import PrivacyBudgetExhausted

from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.privacy.person_level import client_level, device_guarantee
from common.run_config import RunConfig
from server.census import Census, take_census, wait_for_nodes
from server.checkpoint import (
    Checkpoint,
    CheckpointStore,
    arrays_from_record,
    config_fingerprint,
    record_from_arrays,
)
from server.client_level_dp import ClientLevelDP
from server.federation_loop import (
    FederationSettings,
    PrivacyControls,
    RoundOutcome,
    evaluate_starting_model,
    run_rounds,
)
from server.grid_view import PromptGrid
from server.privacy_ledger import ServerLedger
from server.privacy_tracker import PrivacyTracker
from server.round_plot import plot_rounds
from server.run_results import PLOT_FILE, RunResults, save_model, worst_person_epsilon
from server.secagg_round import SecAggSettings
from server.starting_model import load_starting_model
from server.strategies import StrategySettings, build_strategy

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = RunConfig.from_flower(context.run_config)
    out_dir = Path(cfg.out_dir or f"runs/{context.run_id}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Replies are fetched as soon as they are in, on every transport.
    grid = PromptGrid(grid)

    wait_for_nodes(grid, cfg.min_nodes, cfg.round_timeout, cfg.census_settle)
    census = take_census(grid, cfg.round_timeout)
    _announce(census, out_dir)

    # Seeded so a run's starting point is reproducible.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    ledger = ServerLedger(out_dir)
    secagg = _secagg_settings(cfg)
    dimension = sum(t.numel() for t in model.state_dict().values())
    client_dp = ClientLevelDP(cfg, len(census.nodes_with_role("train")), ledger, secagg, dimension)
    privacy = PrivacyControls(ledger, client_dp, context, secagg)
    strategy = build_strategy(
        StrategySettings(name=cfg.strategy, trim=cfg.trim, num_malicious=cfg.num_malicious),
        num_train_nodes=len(census.nodes_with_role("train")),
    )
    results = RunResults(config=cfg.to_flower(), classes=list(COMPOSITE_CLASSES))
    if cfg.initial_model:
        results.pretraining = load_starting_model(model, Path(cfg.initial_model))
        _say(f"starting from {cfg.initial_model}: {results.pretraining.get('summary', '')}")
    tracker = PrivacyTracker()
    arrays = ArrayRecord(model.state_dict())
    checkpoints = CheckpointStore(out_dir)
    fingerprint = config_fingerprint(cfg.to_flower())
    start_round = 1
    pending: RoundOutcome | None = None
    if (resumed := checkpoints.latest(fingerprint)) is not None:
        # Devices keep their own accountants; the server restores its model,
        # results, per-device records and client-level accountant, so no
        # round is trained twice and no epsilon is reset or counted twice.
        arrays = record_from_arrays(resumed.arrays)
        results.rounds = list(resumed.results.get("rounds", []))
        results.round_0 = dict(resumed.results.get("round_0", {}))
        tracker.restore(resumed.results.get("privacy", {}).get("devices", {}))
        client_dp.load_state_dict(resumed.client_accountant)
        start_round = resumed.next_round
        if resumed.pending_evaluation:
            # Trained before the crash, its evaluation never came back: done first.
            pending = RoundOutcome.from_training_entry(resumed.pending_evaluation, arrays)
        _say(f"resuming at round {start_round} from {checkpoints.directory}")

    settings = FederationSettings(
        num_rounds=cfg.num_server_rounds,
        num_classes=len(COMPOSITE_CLASSES),
        timeout=cfg.round_timeout,
        start_round=start_round,
        max_update_norm=cfg.max_update_norm,
    )

    def on_stage(done: RoundOutcome | None, trained: RoundOutcome | None, latest: Census) -> None:
        # Everything spent so far: the headline never lags behind the ledger.
        results.person_level = _people(ledger, latest, cfg.delta)
        results.privacy = tracker.as_dict()
        results.client_level = client_dp.as_dict()
        results.devices = {d.device_id: d.role for d in latest.devices.values()}
        results.not_private_because = _not_private_because(cfg, latest)
        if done is not None:
            entry = done.as_entry()
            # The round's own point on the ε-UF1 curve: what was spent through it.
            entry["person_epsilon"] = worst_person_epsilon(
                _people(ledger, latest, cfg.delta, through_round=done.round)
            )
            results.add_round(entry)
            save_model(done.arrays.to_torch_state_dict(), out_dir)
        results.save(out_dir)
        if done is not None:
            plot_rounds(
                [results.round_0, *results.rounds] if results.round_0 else results.rounds,
                out_dir / PLOT_FILE,
            )
        latest_round = trained or done
        assert latest_round is not None
        checkpoints.save(
            Checkpoint(
                round=latest_round.round,
                arrays=arrays_from_record(latest_round.arrays),
                strategy={"name": cfg.strategy},
                client_accountant=client_dp.state_dict(),
                results=results.to_json(),
                config_fingerprint=fingerprint,
                pending_evaluation=trained.training_entry() if trained is not None else {},
            )
        )
        if done is not None:
            _progress(done, results.rounds[-1]["person_epsilon"], cfg.num_server_rounds)

    # A pretrained start is scored before round 1, so the gain of federated training
    # shows; a random start is not (its score says nothing and would cost a release).
    if start_round == 1 and cfg.initial_model:
        results.round_0 = evaluate_starting_model(
            grid, strategy, arrays, census, settings, ledger, str(context.run_id)
        )
        _say(
            f"round  0/{cfg.num_server_rounds}  held-out UF1 {results.round_0['uf1']:.3f}  "
            f"UAR {results.round_0['uar']:.3f}  (the starting model)"
        )
    try:
        run_rounds(
            grid,
            strategy,
            arrays,
            census,
            settings,
            tracker,
            on_stage,
            privacy,
            pending,
        )
    except PrivacyBudgetExhausted as exc:
        # A clean stop: every completed round is already on disk.
        results.stopped = f"PrivacyBudgetExhausted: {exc}"
        results.save(out_dir)
        _say(f"stopped before exceeding the client-level budget: {exc}")
    summary = results.to_json()
    if not results.rounds:
        return
    final, headline = summary["final"], summary["privacy"]["headline"]
    _say(
        f"done: final held-out UF1 {final['uf1']:.3f} UAR {final['uar']:.3f}; "
        f"person-level ε {headline['epsilon']:.2f} (δ={cfg.delta:g}, worst subject, "
        f"against {headline.get('against', 'everyone')}); "
        f"device-reported ε in each mechanism's unit {tracker.worst_epsilon():.2f}; "
        f"results in {out_dir}"
    )


def _people(
    ledger: ServerLedger, census: Census, delta: float, through_round: int | None = None
) -> dict[str, dict[str, Any]]:
    """Each device's person-level guarantee, recomputed from the signed entries
    (those of rounds up to ``through_round``, when given).

    A device that sent none (never sampled) has spent nothing: ε 0. A device
    that trains also counts the coordinator's client-level releases, which
    protect all its subjects (see :mod:`common.privacy.person_level`).
    """

    def through(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if through_round is None:
            return entries
        return [e for e in entries if int(e["round"]) <= through_round]

    client = client_level(through(ledger.chain.entries()), delta)
    kept = {device: through(entries) for device, entries in ledger.device_entries().items()}
    # Every device answers for its people, also one never sampled (it spent nothing).
    devices = sorted({*kept, *(d.device_id for d in census.devices.values())})
    return {d: device_guarantee(kept.get(d, []), client, delta).as_dict() for d in devices}


def _not_private_because(cfg: RunConfig, census: Census) -> list[str]:
    reasons = []
    client_level = cfg.client_target_epsilon > 0 or cfg.client_noise_multiplier > 0
    if not cfg.dp_sgd and not client_level:
        reasons.append("dp-sgd and client-level DP are off: devices trained without noise")
    seeded = sorted(d.device_id for d in census.devices.values() if d.seeded_sampling)
    if seeded:
        reasons.append(
            "seeded-sampling (a non-private debug switch) on "
            + ", ".join(seeded)
            + ": their batches are reproducible from the run seed"
        )
    return reasons


def _secagg_settings(cfg: RunConfig) -> SecAggSettings | None:
    if not cfg.secagg:
        return None
    return SecAggSettings(
        num_shares=cfg.secagg_num_shares,
        reconstruction_threshold=cfg.secagg_reconstruction_threshold,
        clipping_norm=cfg.client_clipping_norm,
        timeout=cfg.round_timeout,
    )


def _announce(census: Census, out_dir: Path) -> None:
    train = census.nodes_with_role("train")
    heldout = census.nodes_with_role("heldout")
    seeded = [d.device_id for d in census.devices.values() if d.seeded_sampling]
    _say(
        f"{len(train)} training devices, {len(heldout)} held-out devices; writing to {out_dir}"
        + (
            f"; NOT PRIVATE: {len(seeded)} devices sample batches from a known seed"
            if seeded
            else ""
        )
    )


def _progress(outcome: RoundOutcome, person_epsilon: float, num_rounds: int) -> None:
    extra = ""
    if outcome.declined:
        extra += f", {len(outcome.declined)} declined"
    if outcome.failed:
        extra += f", {len(outcome.failed)} failed"
    _say(
        f"round {outcome.round:>2}/{num_rounds}  held-out UF1 {outcome.metrics['uf1']:.3f}  "
        f"UAR {outcome.metrics['uar']:.3f}  acc {outcome.metrics['accuracy']:.3f}  "
        f"ε(person, worst) {person_epsilon:.2f}  ε(device unit) {outcome.epsilon:.2f}  "
        f"[{len(outcome.trained)} trained{extra}, {outcome.seconds:.1f}s]"
    )


def _say(line: str) -> None:
    # Printed for `fedmer simulate` (same process) and logged for `flwr run`,
    # whose log stream carries the ServerApp's logger output.
    print(f"[fedmer] {line}", flush=True)
    log.info(line)
