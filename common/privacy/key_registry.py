"""The operator's key registry: which public keys speak for which device.

Devices create their own keys, in their own state directories (see
``fedmer enrol``), and hand the operator an *enrolment*: device id, ledger
public key (Ed25519) and SuperNode authentication public key. The operator
collects them into a registry, adds the coordinator's public key, and signs
it with the operator's key. The auditor trusts the operator's public key
(given out of band) and, through the registry, nothing else: a ledger entry
counts only if the key that signed it is the one registered for its device.
No private key is ever in a registry or an enrolment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.privacy.signed_document import DocumentError, read_document, sign_document

REGISTRY_FORMAT = "fedmer-key-registry"
ENROLMENT_FORMAT = "fedmer-enrolment"
ENROLMENT_FILE = "enrolment.json"


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    ledger_public_key: str  # base64 raw Ed25519
    auth_public_key: str  # OpenSSH line ("" when the device has no SuperNode auth key)
    # The operator declares the device holds one person's data (a phone): the
    # auditor then counts the coordinator's client-level releases as that
    # person's guarantee (node config single-person; the device checks it).
    single_person: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"format": ENROLMENT_FORMAT, **_fields(self)}

    @classmethod
    def read(cls, path: Path) -> Enrolment:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DocumentError(f"{path}: cannot be read as JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != ENROLMENT_FORMAT:
            raise DocumentError(f"{path}: not a {ENROLMENT_FORMAT}")
        if "private" in json.dumps(data).lower():
            raise DocumentError(f"{path}: an enrolment must hold public keys only")
        try:
            return _enrolment(data)
        except KeyError as exc:
            raise DocumentError(f"{path}: no {exc.args[0]!r}") from None


@dataclass(frozen=True)
class KeyRegistry:
    devices: dict[str, Enrolment]
    coordinator_public_key: str
    operator_public_key: str

    def ledger_key(self, device_id: str) -> str | None:
        enrolment = self.devices.get(device_id)
        return enrolment.ledger_public_key if enrolment else None

    def owner_of(self, public_key: str) -> str | None:
        """The device registered with this ledger key ("server" for the coordinator)."""
        if public_key == self.coordinator_public_key:
            return "server"
        for device_id, enrolment in self.devices.items():
            if enrolment.ledger_public_key == public_key:
                return device_id
        return None

    @classmethod
    def read(cls, path: Path, trusted_operator_key: str | None = None) -> KeyRegistry:
        document = read_document(path, REGISTRY_FORMAT, trusted_operator_key)
        devices = {}
        for item in document.get("devices", []):
            enrolment = _enrolment(item)
            if enrolment.device_id in devices:
                raise DocumentError(f"{path}: device {enrolment.device_id!r} registered twice")
            devices[enrolment.device_id] = enrolment
        return cls(devices, str(document["coordinator_public_key"]), str(document["signed_by"]))


def build_registry(
    enrolments: Iterable[Enrolment], coordinator_public_key: str, operator_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The signed registry document for these enrolments and this coordinator."""
    items = sorted(enrolments, key=lambda e: e.device_id)
    ids = [e.device_id for e in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"devices enrolled twice: {', '.join(duplicates)}")
    keys = [e.ledger_public_key for e in items] + [coordinator_public_key]
    if len(set(keys)) != len(keys):
        raise ValueError("two parties enrolled the same ledger key")
    body = {
        "coordinator_public_key": coordinator_public_key,
        "devices": [_fields(e) for e in items],
    }
    return sign_document(REGISTRY_FORMAT, body, operator_key)


def _fields(enrolment: Enrolment) -> dict[str, Any]:
    # single_person only when set, so registries of other devices read as before.
    fields = asdict(enrolment)
    if not enrolment.single_person:
        del fields["single_person"]
    return fields


def _enrolment(item: dict[str, Any]) -> Enrolment:
    return Enrolment(
        str(item["device_id"]),
        str(item["ledger_public_key"]),
        str(item["auth_public_key"]),
        bool(item.get("single_person", False)),
    )
