"""Signed JSON documents: the operator's key registry and the coordinator's run manifest.

A document is a JSON object with a ``format``, its body, the signer's raw
Ed25519 public key (``signed_by``, base64) and an Ed25519 ``signature`` over
the canonical JSON (sorted keys, no spaces) of everything but the signature.
Verifying one against a key the verifier already trusts is what makes it
evidence; a document that merely verifies against the key it carries proves
nothing about who wrote it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.privacy.ledger import public_key_b64


class DocumentError(ValueError):
    """A signed document is unreadable, of the wrong kind, or its signature fails."""


def _canonical(document: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_document(kind: str, body: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    document = {"format": kind, **body, "signed_by": public_key_b64(key)}
    document["signature"] = base64.b64encode(key.sign(_canonical(document))).decode()
    return document


def read_document(path: Path, kind: str, trusted_key: str | None = None) -> dict[str, Any]:
    """The document at ``path``, checked as :func:`check_document` does; the errors name the file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{path}: cannot be read as JSON ({exc})") from None
    return check_document(document, kind, trusted_key, str(path))


def check_document(
    document: Any, kind: str, trusted_key: str | None = None, source: str = "document"
) -> dict[str, Any]:
    """``document``, checked: its format, its signature, and (when given) that
    ``trusted_key`` signed it. Raises DocumentError naming ``source``."""
    if not isinstance(document, dict) or document.get("format") != kind:
        found = document.get("format") if isinstance(document, dict) else None
        raise DocumentError(f"{source}: not a {kind} (format {found!r})")
    signer = str(document.get("signed_by", ""))
    if trusted_key is not None and signer != trusted_key:
        raise DocumentError(f"{source}: signed by {signer[:16]}..., not by the trusted key")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signer))
        public.verify(base64.b64decode(str(document.get("signature", ""))), _canonical(document))
    except (InvalidSignature, ValueError, TypeError):
        raise DocumentError(f"{source}: signature invalid (the {kind} was altered)") from None
    return document
