"""The operator's tooling for the key registry (on the operator's machine).

The operator signs, with the operator's own Ed25519 key, a registry of the
public keys devices enrolled with and the coordinator's public key. The
operator's key lives at ``$FEDMER_OPERATOR_KEY`` or, by default,
``$XDG_CONFIG_HOME/fedmer/operator_ed25519.pem``: never in a run folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from common.atomic_io import write_json_atomic
from common.paths import signing_key_path
from common.privacy.key_registry import Enrolment, build_registry
from common.privacy.ledger import load_or_create_key, public_key_b64
from server.privacy_ledger import coordinator_key_path

OPERATOR_KEY_ENV = "FEDMER_OPERATOR_KEY"
REGISTRY_FILE = "registry.json"


def operator_key_path() -> Path:
    return signing_key_path(OPERATOR_KEY_ENV, "operator_ed25519.pem")


def coordinator_public_key() -> str:
    """The public half of this machine's coordinator key (created on first use)."""
    return public_key_b64(load_or_create_key(coordinator_key_path()))


def write_registry(
    out: Path,
    enrolments: Iterable[Enrolment],
    operator_key: Path | None = None,
    coordinator_key: str | None = None,
) -> tuple[Path, str]:
    """Sign and write the registry; returns its path and the operator's public key."""
    key = load_or_create_key(Path(operator_key or operator_key_path()))
    document = build_registry(enrolments, coordinator_key or coordinator_public_key(), key)
    write_json_atomic(Path(out), document)
    return Path(out), public_key_b64(key)
