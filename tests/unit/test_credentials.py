"""`fedmer certs` / `fedmer keys`: modes, SANs, no silent overwrite, flwr-loadable keys."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from common.credentials import (
    CredentialExistsError,
    create_certificates,
    create_device_keys,
    device_ids,
    load_auth_private_key,
    load_ledger_private_key,
    parse_sans,
)
from fedmer.cli import main


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_command_writes_ca_and_server_cert_with_chosen_sans(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert (
        main(
            [
                "certs",
                "--out",
                str(out),
                "--san",
                "superlink.example.org,10.0.0.7",
                "--san",
                "127.0.0.1",
            ]
        )
        == 0
    )
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example.org"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("127.0.0.1"),
    }
    # Signed by the CA; the CA is a CA, the server cert is not.
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _mode(out / "ca.key") == 0o600
    assert _mode(out / "server.key") == 0o600
    assert _mode(out / "server.pem") == 0o644


def test_certs_loadable_as_flower_server_certificates(tmp_path: Path) -> None:
    import grpc

    paths = create_certificates(tmp_path)
    # What flower-superlink does with --ssl-* files: a gRPC/uvicorn TLS server.
    grpc.ssl_server_credentials(
        [(paths.server_key.read_bytes(), paths.server_cert.read_bytes())],
        root_certificates=paths.ca_cert.read_bytes(),
    )
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(paths.server_cert, paths.server_key)


def test_certs_never_overwrite_silently(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    create_certificates(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(CredentialExistsError) as err:
        create_certificates(tmp_path)
    assert "ca.key" in str(err.value) and "server.key" in str(err.value)
    assert main(["certs", "--out", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().out
    assert (tmp_path / "ca.key").read_bytes() == before
    assert main(["certs", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.key").read_bytes() != before


def test_partial_existing_set_is_refused_and_nothing_written(tmp_path: Path) -> None:
    (tmp_path / "server.key").write_text("mine")
    with pytest.raises(CredentialExistsError):
        create_certificates(tmp_path)
    assert not (tmp_path / "ca.pem").exists()
    assert (tmp_path / "server.key").read_text() == "mine"


def test_bad_san_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        parse_sans(["bad name"])
    with pytest.raises(ValueError, match="at least one"):
        parse_sans([" "])
    assert isinstance(parse_sans(["::1"])[0], x509.IPAddress)


def test_enrol_creates_the_devices_keys_in_its_state_dir_and_hands_out_public_ones(
    tmp_path: Path,
) -> None:
    import json

    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import uses_nist_ec_curve

    from common.privacy.ledger import public_key_b64

    state = tmp_path / "state"
    assert main(["enrol", str(state), "--device-id", "clinic-a"]) == 0
    assert _mode(state / "auth_key") == 0o600
    assert _mode(state / "device_ed25519.pem") == 0o600
    # flower-supernode reads the private key with load_ssh_private_key ...
    private = load_auth_private_key(state / "auth_key")
    assert isinstance(private, ec.EllipticCurvePrivateKey) and uses_nist_ec_curve(
        private.public_key()
    )
    # ... and `flwr supernode register` loads the public key with its own loader.
    assert try_load_public_key(state / "auth_key.pub")
    ledger = load_ledger_private_key(state / "device_ed25519.pem")
    assert isinstance(ledger, ed25519.Ed25519PrivateKey)
    enrolment = json.loads((state / "enrolment.json").read_text())
    assert enrolment["device_id"] == "clinic-a"
    assert enrolment["ledger_public_key"] == public_key_b64(ledger)
    assert "PRIVATE" not in (state / "enrolment.json").read_text()
    # Enrolling again keeps the keys: a device's ledger key never changes.
    before = (state / "device_ed25519.pem").read_bytes()
    assert main(["enrol", str(state), "--device-id", "clinic-a"]) == 0
    assert (state / "device_ed25519.pem").read_bytes() == before


def test_registry_binds_enrolled_keys_and_is_signed_by_the_operator(tmp_path: Path) -> None:
    from common.privacy.key_registry import KeyRegistry
    from common.privacy.signed_document import DocumentError

    for device in ("a", "b"):
        assert main(["enrol", str(tmp_path / device), "--device-id", device]) == 0
    operator = tmp_path / "operator.pem"
    out = tmp_path / "registry.json"
    assert main(["registry", str(tmp_path / "a"), str(tmp_path / "b" / "enrolment.json"),
                 "--out", str(out), "--operator-key", str(operator)]) == 0  # fmt: skip
    registry = KeyRegistry.read(out)
    assert sorted(registry.devices) == ["a", "b"]
    assert registry.owner_of(registry.devices["a"].ledger_public_key) == "a"
    assert "PRIVATE" not in out.read_text()
    with pytest.raises(DocumentError, match="not by the trusted key"):
        KeyRegistry.read(out, trusted_operator_key="c29tZW9uZSBlbHNl")
    text = out.read_text().replace('"a"', '"z"', 1)
    (tmp_path / "edited.json").write_text(text)
    with pytest.raises(DocumentError, match="signature invalid"):
        KeyRegistry.read(tmp_path / "edited.json")


def test_ledger_key_is_the_one_the_client_app_uses(tmp_path: Path) -> None:
    from client.accountant_state import KEY_FILE
    from common.privacy.ledger import load_or_create_key, public_key_b64

    [keys] = create_device_keys(tmp_path, ["dev-a"])
    assert keys.ledger_private_key.name == KEY_FILE
    loaded = load_or_create_key(keys.ledger_private_key)  # must not replace it
    assert public_key_b64(loaded) == public_key_b64(
        load_ledger_private_key(keys.ledger_private_key)
    )


def test_keys_never_overwrite_silently(tmp_path: Path) -> None:
    create_device_keys(tmp_path, device_ids(2))
    before = (tmp_path / "device-002" / "auth_key").read_bytes()
    with pytest.raises(CredentialExistsError, match="device-002"):
        create_device_keys(tmp_path, device_ids(3))
    # All-or-nothing: device-003 was not created either.
    assert not (tmp_path / "device-003").exists()
    # Enrolling a device that already has keys keeps them.
    assert main(["enrol", str(tmp_path / "device-002"), "--device-id", "device-002"]) == 0
    assert (tmp_path / "device-002" / "auth_key").read_bytes() == before


def test_device_ids_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        device_ids(0)
    with pytest.raises(ValueError, match="unique"):
        create_device_keys(tmp_path, ["a", "a"])
    with pytest.raises(ValueError, match="folder name"):
        create_device_keys(tmp_path, ["../x"])
