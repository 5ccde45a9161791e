"""Federation certificates: a CA, party certificates, and the checks around them.

A federation agrees on one CA. Each party holds a key and a certificate signed
by that CA whose subject common name **and** a SAN URI
``fedcredit://party/<name>`` carry the party name; the certificate is used both
as the party's server certificate and as its client certificate (mutual TLS),
so every peer learns the caller's name from the verified certificate and never
from a message field. The certificate also carries a DNS SAN equal to the
party name in a namespace of its own, ``<name>.party.fedcredit.invalid``
(:func:`tls_server_name`): a client connects with a target-name override of
that name, so TLS hostname verification checks that the server really is that
party. The namespace matters: were the DNS SAN the bare party name, a
certificate issued to ``gov`` with ``--host bank`` would pass a client's check
for ``bank``. :func:`issue` refuses extra hosts inside the namespace, and
:func:`party_name_from_cert` refuses a certificate whose namespaced DNS SANs
name another party.

Keys are EC P-256 (fast to generate and to handshake), written ``0600``, and
never logged.

Examples
--------
>>> ca_cert, ca_key = init_ca("federation/")            # doctest: +SKIP
>>> tls = issue("federation/", "bank")                   # doctest: +SKIP
>>> tls.cert.name                                         # doctest: +SKIP
'bank.crt'
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError
from .ids import is_name

__all__ = [
    "TlsFiles",
    "init_ca",
    "issue",
    "load_tls",
    "LoadedTls",
    "party_name_from_cert",
    "check_party_name",
    "SAN_URI_PREFIX",
    "SAN_DNS_SUFFIX",
    "tls_server_name",
    "CA_VALIDITY_DAYS",
    "PARTY_VALIDITY_DAYS",
]

SAN_URI_PREFIX = "fedcredit://party/"
#: DNS SAN namespace of party names (``.invalid`` is reserved, RFC 2606: no real host is in it).
SAN_DNS_SUFFIX = ".party.fedcredit.invalid"
CA_VALIDITY_DAYS = 5 * 365
PARTY_VALIDITY_DAYS = 2 * 365
CA_CERT_NAME, CA_KEY_NAME = "ca.crt", "ca.key"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files a party needs for mutual TLS.

    Parameters
    ----------
    ca : Path
        The federation CA certificate (trust anchor for every peer).
    cert : Path
        This party's certificate, signed by the CA.
    key : Path
        This party's private key (mode 0600).
    """

    ca: Path
    cert: Path
    key: Path

    def __post_init__(self):
        for f in ("ca", "cert", "key"):
            object.__setattr__(self, f, Path(getattr(self, f)))


@dataclass(frozen=True)
class LoadedTls:
    """PEM bytes of a checked :class:`TlsFiles` (see :func:`load_tls`)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    party: str

    def __repr__(self) -> str:  # never show key material
        return f"LoadedTls(party={self.party!r}, key=<hidden>)"


def check_party_name(name: str) -> str:
    """Return ``name`` if it is a valid party name, else raise ConfigError.

    A party name is 1-63 characters of ``[a-z0-9_-]`` starting with a letter
    or digit (it is used as a certificate DNS name and in file names).
    """
    if not is_name(name):
        raise ConfigError(
            f"invalid party name {name!r}: use 1-63 characters of [a-z0-9_-], starting with a letter or digit"
        )
    return name


def tls_server_name(name: str) -> str:
    """The DNS SAN a client checks on party ``name``'s server certificate (target-name override)."""
    return check_party_name(name) + SAN_DNS_SUFFIX


def _in_namespace(host: str) -> bool:
    return host.lower().rstrip(".").endswith(SAN_DNS_SUFFIX) or host.lower().rstrip(".") == SAN_DNS_SUFFIX[1:]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _serial() -> int:
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read(path: Path, what: str) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None


def _load_cert(data: bytes, path: Path | str, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{what} file {path} is not a PEM or DER X.509 certificate") from None


def _load_key(data: bytes, path: Path | str):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # never include the data: it may be (part of) a key
        raise ConfigError(f"key file {path} is not an unencrypted PEM private key") from None


def init_ca(directory: str | os.PathLike, *, name: str = "fedcredit federation CA", overwrite: bool = False) -> tuple[Path, Path]:
    """Create a federation CA (EC P-256, valid 5 years) in ``directory``.

    Parameters
    ----------
    directory : path
        Where ``ca.crt`` and ``ca.key`` (mode 0600) are written.
    name : str
        The CA's common name.
    overwrite : bool, default=False
        Replace an existing CA. Off by default: replacing a CA invalidates
        every party certificate issued by it.

    Returns
    -------
    (cert_path, key_path) : tuple of Path
    """
    d = Path(directory)
    cert_path, key_path = d / CA_CERT_NAME, d / CA_KEY_NAME
    if not overwrite and (cert_path.exists() or key_path.exists()):
        raise ConfigError(f"a CA already exists in {d} (pass overwrite=True to replace it and every certificate it signed)")
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _host_sans(hosts) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def issue(
    directory: str | os.PathLike,
    name: str,
    *,
    hosts: tuple[str, ...] | list[str] = ("127.0.0.1", "localhost"),
    days: int = PARTY_VALIDITY_DAYS,
    overwrite: bool = False,
) -> TlsFiles:
    """Issue a key and certificate for party ``name``, signed by the CA in ``directory``.

    The certificate's CN is ``name``; its SANs are the URI
    ``fedcredit://party/<name>``, the DNS name ``<name>.party.fedcredit.invalid``
    (:func:`tls_server_name`, checked by peers through a target-name override)
    and ``hosts`` (DNS names or IP addresses the party is reached at; none may
    lie in the party namespace). It is valid for TLS server and client auth.

    Parameters
    ----------
    directory : path
        Directory holding ``ca.crt``/``ca.key`` (from :func:`init_ca`); the
        party's ``<name>.crt`` and ``<name>.key`` (0600) are written there.
    name : str
        Party name (see :func:`check_party_name`).
    hosts : sequence of str, default=("127.0.0.1", "localhost")
        Extra SANs.
    days : int, default=730
        Validity.
    overwrite : bool, default=False
        Replace an existing certificate and key for ``name``.

    Returns
    -------
    TlsFiles
    """
    check_party_name(name)
    bad = [h for h in hosts if not isinstance(h, str) or _in_namespace(h)]
    if bad:
        raise ConfigError(f"host {bad[0]!r} is in the party namespace *{SAN_DNS_SUFFIX}: only the party's own "
                          f"name goes there (it is added automatically)")
    d = Path(directory)
    ca_cert_path, ca_key_path = d / CA_CERT_NAME, d / CA_KEY_NAME
    ca_cert = _load_cert(_read(ca_cert_path, "CA certificate"), ca_cert_path, "CA certificate")
    ca_key = _load_key(_read(ca_key_path, "CA key"), ca_key_path)
    if ca_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != ca_cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ConfigError(f"CA key {ca_key_path} does not match CA certificate {ca_cert_path}")
    cert_path, key_path = d / f"{name}.crt", d / f"{name}.key"
    if not overwrite and (cert_path.exists() or key_path.exists()):
        raise ConfigError(f"a certificate for party {name!r} already exists in {d} (pass overwrite=True to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(SAN_URI_PREFIX + name),
                                    x509.DNSName(tls_server_name(name))]
    sans += [s for s in _host_sans(hosts) if s not in sans]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(min(now + _dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(ca=ca_cert_path, cert=cert_path, key=key_path)


def party_name_from_cert(cert: bytes | str | x509.Certificate) -> str:
    """The party name a certificate was issued to.

    Taken from the SAN URI ``fedcredit://party/<name>``; the subject CN must
    agree. Accepts PEM or DER bytes (or a PEM str, or a loaded certificate).

    Raises
    ------
    ConfigError
        The certificate has no party URI, several, or a CN that disagrees.
    """
    if isinstance(cert, str):
        cert = cert.encode()
    if not isinstance(cert, x509.Certificate):
        cert = _load_cert(bytes(cert), "<bytes>", "certificate")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        uris, dns = [], []
    names = [u[len(SAN_URI_PREFIX):] for u in uris if u.startswith(SAN_URI_PREFIX)]
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(names) != 1:
        raise ConfigError(
            f"certificate for {cns[0] if cns else '<no CN>'!r} must carry exactly one SAN URI {SAN_URI_PREFIX}<name>, "
            f"found {len(names)}"
        )
    if cns != [names[0]]:
        raise ConfigError(f"certificate CN {cns!r} disagrees with its party URI {SAN_URI_PREFIX}{names[0]}")
    name = check_party_name(names[0])
    foreign = [h for h in dns if _in_namespace(h) and h.lower().rstrip(".") != name + SAN_DNS_SUFFIX]
    if foreign:
        raise ConfigError(f"certificate of party {name!r} claims another party's server name {foreign[0]!r}")
    return name


def _verify_signed_by(cert: x509.Certificate, ca, cert_path, ca_path) -> None:
    """ConfigError unless ``cert`` is signed by ``ca`` (or by one CA of a bundle: a list) and valid now."""
    cas = ca if isinstance(ca, list) else [ca]
    for one in cas:
        try:
            cert.verify_directly_issued_by(one)
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    else:
        raise ConfigError(f"certificate {cert_path} is not signed by the federation CA {ca_path}"
                          + (f" (none of its {len(cas)} CAs)" if len(cas) > 1 else "")) from None
    now = _now()
    if now > cert.not_valid_after_utc:
        raise ConfigError(f"certificate {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it "
                          f"with 'fedcredit certs issue DIR NAME --renew' and 'fedcredit party reload'")
    if now < cert.not_valid_before_utc:
        raise ConfigError(f"certificate {cert_path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def _load_cas(data: bytes, path) -> list:
    """The CA certificate(s) of a CA file: one, or a bundle of several during a CA rotation (PEM)."""
    if b"-----BEGIN" in data and data.count(b"-----BEGIN CERTIFICATE") > 1:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ConfigError(f"CA certificate file {path} is not a PEM bundle of X.509 certificates") from None
    return [_load_cert(data, path, "CA certificate")]


def rotate_ca(directory: str | os.PathLike, *, name: str = "fedcredit federation CA") -> tuple[Path, Path]:
    """Start a CA rotation in ``directory``: a new CA, the old one kept, and a bundle of both.

    The old ``ca.crt``/``ca.key`` become ``ca-retired-<serial>.crt``/``.key``;
    the new CA is ``ca.crt``/``ca.key`` (``issue`` signs with it from now on);
    ``ca-bundle.crt`` holds the new and the old CA. Give the bundle to every
    party as its ``[tls].ca`` and ``fedcredit party reload`` each: during the
    rotation window both CAs are accepted. Then re-issue every party's
    certificate from the new CA, reload, and finally replace the bundle by
    ``ca.crt`` alone (and reload) to end the window.

    Returns
    -------
    (bundle_path, new_ca_path) : tuple of Path
    """
    d = Path(directory)
    old_pem = _read(d / CA_CERT_NAME, "CA certificate")
    old = _load_cert(old_pem, d / CA_CERT_NAME, "CA certificate")
    retired = f"ca-retired-{old.serial_number:x}"[:40]
    os.replace(d / CA_CERT_NAME, d / f"{retired}.crt")
    os.replace(d / CA_KEY_NAME, d / f"{retired}.key")
    cert_path, _ = init_ca(d, name=name)
    bundle = d / "ca-bundle.crt"
    bundle.write_bytes(cert_path.read_bytes() + old.public_bytes(serialization.Encoding.PEM))
    return bundle, cert_path


def load_tls(tls: TlsFiles, *, expect_party: str | None = None) -> LoadedTls:
    """Read and check a party's TLS files.

    Checks that every file is readable, the certificate is signed by the CA
    and currently valid, the key matches the certificate, and (if given) the
    certificate names ``expect_party``.

    Raises
    ------
    ConfigError
        Naming the file at fault.
    """
    ca_pem = _read(tls.ca, "CA certificate")
    cert_pem = _read(tls.cert, "certificate")
    key_pem = _read(tls.key, "key")
    cas = _load_cas(ca_pem, tls.ca)
    ca = cas[0]
    cert = _load_cert(cert_pem, tls.cert, "certificate")
    key = _load_key(key_pem, tls.key)
    _verify_signed_by(cert, cas, tls.cert, tls.ca)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise ConfigError(f"key {tls.key} does not match certificate {tls.cert}")
    try:
        name = party_name_from_cert(cert)
    except ConfigError as exc:
        raise ConfigError(f"{tls.cert}: {exc}") from None
    if expect_party is not None and name != expect_party:
        raise ConfigError(f"certificate {tls.cert} is issued to party {name!r}, not {expect_party!r}")
    try:
        dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if tls_server_name(name) not in dns:
        raise ConfigError(f"certificate {tls.cert} lacks the DNS name {tls_server_name(name)!r} peers check (issued "
                          f"by an older fedcredit?): re-issue it with 'fedcredit certs issue'")
    # grpc wants PEM
    if b"-----BEGIN" not in ca_pem:
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    if b"-----BEGIN" not in cert_pem:
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return LoadedTls(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem, party=name)
