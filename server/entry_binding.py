"""Is a device's ledger entry the one for this run, this round and this reply?

The coordinator checks every signed entry a device sends before keeping it.
The entry must name this run and round and carry the round's nonce, which
the coordinator drew at random and which no earlier run or round could have
known. When the reply's payload is visible to the coordinator (a model, or
released counts), the entry must also carry that payload's hash. An entry
that fails is not kept, and the reply is counted as failed: a replayed or
mismatched entry must not stand in for the spend that produced this reply.
"""

from __future__ import annotations

from common.privacy.ledger import LedgerError, decode_entry


def binding_problem(
    line: str, run_id: str, server_round: int, nonce: str, payload_hash: str | None
) -> str | None:
    """Why ``line`` does not account for this reply (None when it does).

    ``payload_hash`` is the hash of what the reply carries, or None when the
    coordinator cannot see it (a refusal, a SecAgg+ masked update).
    """
    try:
        entry = decode_entry(line)
    except LedgerError as exc:
        return f"ledger entry unreadable: {exc}"
    if str(entry["run_id"]) != run_id:
        return f"ledger entry is for run {entry['run_id']!r}, not {run_id!r}"
    if int(entry["round"]) != server_round:
        return f"ledger entry is for round {entry['round']}, not {server_round}"
    if entry["nonce"] != nonce:
        return "ledger entry does not carry this round's nonce (replayed from another round?)"
    if payload_hash is not None and entry["event"] != "refused":
        if entry["update_hash"] != payload_hash:
            return "ledger entry's update_hash is not the hash of the payload it came with"
    return None
