"""On the device: its keys, created where they stay, and the enrolment it hands out.

``enrol(state_dir, device_id)`` creates the device's ledger-signing key
(Ed25519) and, unless one is there, its SuperNode authentication key pair, all
inside the device's own state directory (private keys 0600, never replaced),
and writes ``enrolment.json`` beside them: the device id and the two *public*
keys, for the operator's key registry. Nothing private leaves the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from client.accountant_state import KEY_FILE
from common.credentials import AUTH_KEY_FILE, AUTH_PUBLIC_KEY_FILE, create_auth_key_pair
from common.privacy.key_registry import ENROLMENT_FILE, Enrolment
from common.privacy.ledger import load_or_create_key, public_key_b64


def enrol(
    state_dir: Path, device_id: str, with_auth_key: bool = True, single_person: bool = False
) -> Enrolment:
    state_dir = Path(state_dir)
    if not device_id or "/" in device_id:
        raise ValueError(f"device id {device_id!r} is not valid")
    state_dir.mkdir(parents=True, exist_ok=True)
    ledger_key = load_or_create_key(state_dir / KEY_FILE)
    auth_public = state_dir / AUTH_PUBLIC_KEY_FILE
    if with_auth_key and not (state_dir / AUTH_KEY_FILE).exists():
        create_auth_key_pair(state_dir, device_id)
    enrolment = Enrolment(
        device_id=device_id,
        ledger_public_key=public_key_b64(ledger_key),
        auth_public_key=auth_public.read_text().strip() if auth_public.exists() else "",
        single_person=single_person,
    )
    (state_dir / ENROLMENT_FILE).write_text(json.dumps(enrolment.to_dict(), indent=2) + "\n")
    return enrolment
