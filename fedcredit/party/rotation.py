"""Certificate rotation without a restart (``fedcredit party reload``), and expiry warnings.

A party picks up a renewed certificate/key and a new CA bundle when its
operator runs ``fedcredit party reload``: the gRPC server's certificate
configuration is fetched per handshake (``grpc.dynamic_ssl_server_credentials``),
so new connections get the new certificate while open connections, and the
jobs running over them, continue; client channels are re-created with the new
credentials. During a CA rotation every party's ``[tls].ca`` is a bundle of
the old and the new CA (``fedcredit certs init DIR --rotate``), so
certificates from both are accepted.

Nothing is swapped unless the new files pass :func:`fedcredit.certs.load_tls`
(signed by a CA of the bundle, currently valid, key matching, issued to this
party): an expired certificate is refused with the date it expired.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..certs import TlsFiles

if TYPE_CHECKING:  # pragma: no cover
    from ..config import PartyConfig
    from .party import Party

__all__ = ["reload_tls", "expiry_warnings", "WARN_DAYS"]

#: ``party health`` warns this many days before any certificate of the federation expires.
WARN_DAYS = 30


def reload_tls(party: "Party", cfg: "PartyConfig") -> str:
    """Swap ``party``'s TLS material for the files ``cfg`` names; a sentence for the operator."""
    files = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
    loaded = party.transport.reload_tls(files)  # ConfigError (nothing changed) if the files do not check out
    party._tls = files
    if getattr(party, "console", None) is not None:
        party.console.reload_tls(files.cert, files.key)
    cert = x509.load_pem_x509_certificate(loaded.cert_pem)
    cas = x509.load_pem_x509_certificates(loaded.ca_pem)
    fp = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    party.audit.append("tls.reloaded", cert_sha256=fp, not_after=cert.not_valid_after_utc.isoformat(),
                       cas=[hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest() for c in cas])
    return (f"TLS reloaded: certificate {fp[:16]}… valid until {cert.not_valid_after_utc:%Y-%m-%d}, "
            f"{len(cas)} CA(s) accepted")


def expiry_warnings(name: str, not_after: dict[str, float], *, now: float | None = None,
                    days: int = WARN_DAYS) -> list[str]:
    """Warnings for certificates of ``name`` that expire within ``days`` ({which: unix time})."""
    now = time.time() if now is None else now
    out = []
    for which, t in sorted(not_after.items()):
        if t and t - now < days * 86400:
            left = (t - now) / 86400
            when = time.strftime("%Y-%m-%d", time.gmtime(t))
            out.append(f"WARNING: {name}'s {which} certificate " + (f"expired on {when}" if left < 0 else
                       f"expires on {when} (in {left:.0f} days): renew it (fedcredit certs issue --renew, "
                       f"fedcredit party reload)"))
    return out

