"""Federation CA and party certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcredit.certs import (
    SAN_URI_PREFIX,
    TlsFiles,
    check_party_name,
    init_ca,
    issue,
    load_tls,
    party_name_from_cert,
    tls_server_name,
)
from fedcredit.errors import ConfigError


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    d = tmp_path_factory.mktemp("fed")
    init_ca(d)
    return d, issue(d, "bank", hosts=("10.0.0.7", "bank.example.org"))


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca(fed):
    d, _ = fed
    ca = _cert(d / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 5 * 365 - 1 <= days <= 5 * 365 + 1
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600


def test_party_certificate(fed):
    d, tls = fed
    cert = _cert(tls.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bank"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SAN_URI_PREFIX + "bank"]
    assert set(san.get_values_for_type(x509.DNSName)) == {tls_server_name("bank"), "bank.example.org"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    cert.verify_directly_issued_by(_cert(d / "ca.crt"))
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    assert tls == TlsFiles(d / "ca.crt", d / "bank.crt", d / "bank.key")


@pytest.mark.parametrize("form", ["pem", "der", "str", "object"])
def test_party_name_from_cert(fed, form):
    _, tls = fed
    pem = tls.cert.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    arg = {"pem": pem, "der": cert.public_bytes(serialization.Encoding.DER), "str": pem.decode(), "object": cert}[form]
    assert party_name_from_cert(arg) == "bank"


def _self_signed(cn: str, uris: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    )
    if uris:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "cn, uris, match",
    [
        ("bank", [], "exactly one SAN URI"),
        ("bank", [SAN_URI_PREFIX + "bank", SAN_URI_PREFIX + "gov"], "found 2"),
        ("gov", [SAN_URI_PREFIX + "bank"], "CN \\['gov'\\] disagrees"),
    ],
)
def test_party_name_from_bad_cert(cn, uris, match):
    with pytest.raises(ConfigError, match=match):
        party_name_from_cert(_self_signed(cn, uris))


@pytest.mark.parametrize("name", ["", "Bank", "-x", "a b", "a/b", "x" * 64, "ünï", None])
def test_bad_party_names(tmp_path, name):
    with pytest.raises(ConfigError, match="invalid party name"):
        check_party_name(name)


def test_existing_files_not_overwritten(fed):
    d, _ = fed
    with pytest.raises(ConfigError, match="a CA already exists"):
        init_ca(d)
    with pytest.raises(ConfigError, match="a certificate for party 'bank' already exists"):
        issue(d, "bank")


def test_issue_without_ca(tmp_path):
    with pytest.raises(ConfigError, match=r"CA certificate file not found: .*ca\.crt"):
        issue(tmp_path, "bank")


def test_load_tls_ok(fed):
    _, tls = fed
    loaded = load_tls(tls, expect_party="bank")
    assert loaded.party == "bank" and b"PRIVATE KEY" in loaded.key_pem
    assert "PRIVATE" not in repr(loaded) and "hidden" in repr(loaded)


@pytest.fixture(scope="module")
def other(tmp_path_factory, fed):
    d, _ = fed
    o = tmp_path_factory.mktemp("other")
    init_ca(o)
    return {"gov": issue(d, "gov"), "foreign-bank": issue(o, "bank")}


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing-cert", r"certificate file not found: .*nope\.crt"),
        ("missing-key", r"key file not found: .*nope\.key"),
        ("garbage-cert", r"certificate file .*junk is not a PEM or DER X\.509 certificate"),
        ("garbage-key", r"key file .*junk is not an unencrypted PEM private key"),
        ("key-mismatch", r"key .*gov\.key does not match certificate .*bank\.crt"),
        ("other-ca", r"certificate .*bank\.crt is not signed by the federation CA .*ca\.crt"),
        ("wrong-party", r"issued to party 'gov', not 'bank'"),
        ("unreadable", r"cannot read certificate file"),
    ],
)
def test_load_tls_errors(fed, other, tmp_path, case, match):
    d, tls = fed
    junk = tmp_path / "junk"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    files = {
        "missing-cert": TlsFiles(tls.ca, d / "nope.crt", tls.key),
        "missing-key": TlsFiles(tls.ca, tls.cert, d / "nope.key"),
        "garbage-cert": TlsFiles(tls.ca, junk, tls.key),
        "garbage-key": TlsFiles(tls.ca, tls.cert, junk),
        "key-mismatch": TlsFiles(tls.ca, tls.cert, other["gov"].key),
        "other-ca": TlsFiles(tls.ca, other["foreign-bank"].cert, other["foreign-bank"].key),
        "wrong-party": other["gov"],
        "unreadable": TlsFiles(tls.ca, tmp_path, tls.key),  # a directory: IsADirectoryError
    }[case]
    with pytest.raises(ConfigError, match=match) as ei:
        load_tls(files, expect_party="bank")
    assert "PRIVATE KEY" not in str(ei.value)
