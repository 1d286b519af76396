"""Credentials for a deployment: TLS certificates and device keys.

Runs on the operator's machine (and on each device for its own keys); nothing
here talks to the network.

* :func:`create_certificates` makes a CA and a SuperLink server certificate
  whose subject alternative names (DNS names and IP addresses) the operator
  chooses. The SuperLink serves TLS with ``server.pem``/``server.key`` and
  ``ca.pem``; every SuperNode and the ``flwr`` CLI trust ``ca.pem``.
* :func:`create_device_keys` makes, per device, the SuperNode authentication
  key pair in the format flwr 1.41 expects (EC on a NIST curve, OpenSSH
  encoding: ``flower-supernode --auth-supernode-private-key`` reads the private
  key with ``load_ssh_private_key``, ``flwr supernode register`` the public key
  with ``load_ssh_public_key``), and the device's Ed25519 ledger-signing key.
  The ledger key is named ``device_ed25519.pem``, the file the ClientApp looks
  for in its node config ``state-dir``, so a device's key folder can serve as
  its state directory (the ledger is then kept next to the key).

Private keys are written with mode 0600. Existing files are never replaced
unless ``overwrite=True``: :class:`CredentialExistsError` names every file that
is in the way, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
# flwr's own examples authenticate SuperNodes with P-384 keys.
AUTH_CURVE = ec.SECP384R1()
AUTH_KEY_FILE, AUTH_PUBLIC_KEY_FILE = "auth_key", "auth_key.pub"


class CredentialExistsError(FileExistsError):
    """Refused to overwrite credentials that already exist."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(
            f"refusing to overwrite existing credential file(s): {names} "
            "(move them away, or pass --force to replace them)"
        )


@dataclass(frozen=True)
class CertificatePaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class DeviceKeyPaths:
    device_id: str
    auth_private_key: Path  # OpenSSH EC private key: --auth-supernode-private-key
    auth_public_key: Path  # OpenSSH EC public key: `flwr supernode register`
    ledger_private_key: Path  # PEM PKCS#8 Ed25519
    ledger_public_key: Path  # PEM SubjectPublicKeyInfo Ed25519


def parse_sans(names: Iterable[str]) -> list[x509.GeneralName]:
    """``["localhost", "127.0.0.1", "::1"]`` -> DNS names and IP addresses."""
    sans: list[x509.GeneralName] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            if any(c.isspace() for c in name) or "/" in name:
                raise ValueError(f"SAN {raw!r} is neither an IP address nor a DNS name") from None
            sans.append(x509.DNSName(name))
    if not sans:
        raise ValueError("the server certificate needs at least one DNS name or IP address")
    return sans


def create_certificates(
    out_dir: Path,
    sans: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    common_name: str = "fedmer SuperLink",
    days: int = 365,
    overwrite: bool = False,
) -> CertificatePaths:
    """A CA and a server certificate signed by it, with the given SANs."""
    out_dir = Path(out_dir)
    paths = CertificatePaths(
        out_dir / CA_CERT, out_dir / CA_KEY, out_dir / SERVER_CERT, out_dir / SERVER_KEY
    )
    _refuse_existing([paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key], overwrite)
    general_names = parse_sans(sans)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedmer CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )

    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )

    _write(paths.ca_key, _pem_private(ca_key), PRIVATE_MODE)
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    _write(paths.server_key, _pem_private(server_key), PRIVATE_MODE)
    _write(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    return paths


def device_key_paths(out_dir: Path, device_id: str) -> DeviceKeyPaths:
    d = Path(out_dir) / device_id
    return DeviceKeyPaths(
        device_id=device_id,
        auth_private_key=d / AUTH_KEY_FILE,
        auth_public_key=d / AUTH_PUBLIC_KEY_FILE,
        ledger_private_key=d / "device_ed25519.pem",
        ledger_public_key=d / "device_ed25519.pub.pem",
    )


def device_ids(count: int, prefix: str = "device", start: int = 1) -> list[str]:
    if count < 1:
        raise ValueError(f"need at least one device, got {count}")
    return [f"{prefix}-{i:03d}" for i in range(start, start + count)]


def create_device_keys(
    out_dir: Path, ids: Sequence[str], overwrite: bool = False
) -> list[DeviceKeyPaths]:
    """For each device id: ``<out_dir>/<id>/auth_key{,.pub}`` and ``device_ed25519{,.pub}.pem``."""
    if len(set(ids)) != len(ids):
        raise ValueError("device ids must be unique")
    for device_id in ids:
        if not device_id or "/" in device_id or device_id.startswith("."):
            raise ValueError(f"device id {device_id!r} is not a valid folder name")
    all_paths = [device_key_paths(out_dir, i) for i in ids]
    _refuse_existing(
        [
            p
            for k in all_paths
            for p in (
                k.auth_private_key,
                k.auth_public_key,
                k.ledger_private_key,
                k.ledger_public_key,
            )
        ],
        overwrite,
    )
    for keys in all_paths:
        create_auth_key_pair(keys.auth_private_key.parent, keys.device_id)
        ledger = ed25519.Ed25519PrivateKey.generate()
        _write(keys.ledger_private_key, _pem_private(ledger), PRIVATE_MODE)
        _write(
            keys.ledger_public_key,
            ledger.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            PUBLIC_MODE,
        )
    return all_paths


def create_auth_key_pair(folder: Path, device_id: str) -> tuple[Path, Path]:
    """The SuperNode authentication key pair (EC P-384, OpenSSH) in ``folder``:
    ``auth_key`` (0600) and ``auth_key.pub`` (commented with the device id)."""
    private, public = Path(folder) / AUTH_KEY_FILE, Path(folder) / AUTH_PUBLIC_KEY_FILE
    auth = ec.generate_private_key(AUTH_CURVE)
    _write(
        private,
        auth.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        PRIVATE_MODE,
    )
    _write(
        public,
        auth.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + f" {device_id}\n".encode(),
        PUBLIC_MODE,
    )
    return private, public


def load_auth_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a SuperNode auth key the way ``flower-supernode`` does."""
    key = serialization.load_ssh_private_key(Path(path).read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def load_ledger_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def _pem_private(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise CredentialExistsError(existing)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no window where a key is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed the public files' mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
