"""Who is calling, and who we dial: party identity on both ends of a gRPC call.

Server side, :func:`peer_identity` reads the caller's party name from its
verified client certificate, never from a message field. Client side,
:func:`client_channel` is the one way a party (or its operator's CLI) dials
another: mutual TLS, with the server's certificate checked against the peer's
*party name* (target-name override of ``<name>.party.fedcredit.invalid``, a
DNS namespace no ``--host`` may enter: :func:`fedcredit.certs.tls_server_name`),
so a peer's address cannot be hijacked by another member of the federation.
"""

from __future__ import annotations

import threading

import grpc

from ...certs import LoadedTls, party_name_from_cert, tls_server_name
from ...errors import ConfigError
from .options import CLIENT_OPTIONS, grpc_options

__all__ = ["peer_identity", "client_channel", "INSECURE_PARTY_MD"]

#: Metadata key naming the caller on an insecure (test-only) channel, where there is no certificate.
INSECURE_PARTY_MD = "x-fedcredit-insecure-party"

_NAME_CACHE: dict[bytes, str] = {}
_NAME_CACHE_LOCK = threading.Lock()


def _name_from_pem(pem: bytes) -> str:
    with _NAME_CACHE_LOCK:
        name = _NAME_CACHE.get(pem)
    if name is None:
        name = party_name_from_cert(pem)
        with _NAME_CACHE_LOCK:
            if len(_NAME_CACHE) > 1024:
                _NAME_CACHE.clear()
            _NAME_CACHE[pem] = name
    return name


def peer_identity(context: grpc.ServicerContext) -> str:
    """The calling party's name, from its verified client certificate.

    For use at the top of any servicer method on a
    :class:`~fedcredit.transport.grpc.GrpcTransport` server. gRPC has already
    verified the certificate chain against the federation CA
    (``require_client_auth``); this reads the party name from the
    certificate's SAN URI and checks it against the CN. A call without a
    certificate is aborted with UNAUTHENTICATED.

    On a server started with ``insecure=True`` (tests only) there is no
    certificate and the name is read from the ``x-fedcredit-insecure-party``
    metadata the insecure client adds.

    Note: this does not check the peer list; use
    :meth:`GrpcTransport.authorize` for that.
    """
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") == [b"ssl"]:
        pems = auth.get("x509_pem_cert")
        if not pems:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate: mutual TLS is required")
        try:
            name = _name_from_pem(pems[0])
        except ConfigError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"unusable client certificate: {exc}")
        cns = auth.get("x509_common_name") or []
        if cns and cns[0].decode(errors="replace") != name:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "client certificate CN disagrees with its party URI")
        return name
    for key, value in context.invocation_metadata() or ():
        if key == INSECURE_PARTY_MD and isinstance(value, str) and value:
            return value
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate: mutual TLS is required")
    raise AssertionError("unreachable")  # pragma: no cover - context.abort raises


def client_channel(address: str, *, target: str, tls: LoadedTls | None, me: str) -> grpc.Channel:
    """A client channel to the party ``target`` at ``address`` (``host:port``).

    With ``tls`` (our CA bundle, certificate and key): mutual TLS, and the
    server must present a certificate for the party name ``target``. Without
    it (an insecure test party) the channel is plaintext and every call
    carries ``me`` in metadata, which an insecure server takes as the caller.
    """
    options = grpc_options() + CLIENT_OPTIONS
    if tls is None:
        return grpc.intercept_channel(grpc.insecure_channel(address, options=options), _PartyMetadata(me))
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
    )
    options += [("grpc.ssl_target_name_override", tls_server_name(target)), ("grpc.default_authority", target)]
    return grpc.secure_channel(address, creds, options=options)


class _PartyMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the claimed party name to every call on an insecure channel (tests only)."""

    def __init__(self, party: str):
        self.md = (INSECURE_PARTY_MD, party)

    def _details(self, d):
        md = list(d.metadata or []) + [self.md]
        return d._replace(metadata=md) if hasattr(d, "_replace") else _CallDetails(d, md)

    def intercept_unary_unary(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_unary_stream(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_stream_unary(self, cont, d, it):
        return cont(self._details(d), it)

    def intercept_stream_stream(self, cont, d, it):
        return cont(self._details(d), it)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.credentials = d.method, d.timeout, d.credentials
        self.wait_for_ready, self.compression = getattr(d, "wait_for_ready", None), getattr(d, "compression", None)
        self.metadata = metadata
