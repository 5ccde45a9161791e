"""gRPC transport: tagged messages between parties over mutual TLS.

Modules, in dependency order: :mod:`.options` (size limits, the one place
that sets gRPC options), :mod:`.identity` (who calls: certificate -> party
name; who we dial: :func:`client_channel`), :mod:`.framing` (chunks, header
grammar, message digest), :mod:`.limits` (per-caller call limits, per-peer
push rates, bounded refusal logs), :mod:`.mailbox` (received, not yet
taken), :mod:`.authz` (the one authorization check), :mod:`.servicer` (the
Federation service), :mod:`.server` (``create_server(cfg) -> (server,
port)``), :mod:`.backend` and :mod:`.transport` (:class:`GrpcTransport`).

One :class:`GrpcTransport` per party process owns a gRPC server (the
``Federation`` service of ``protos/fedcredit/v1/federation.proto``, plus any
servicers the party adds before :meth:`GrpcTransport.start`) and one cached
mTLS client channel per peer. :meth:`GrpcTransport.channel` gives a
:class:`~fedcredit.transport.base.Channel` for one job; protocols only ever see
that Channel.

Security
--------
* Mutual TLS is the default and the only mode unless ``insecure=True`` is
  passed explicitly (and then ``tls`` must be ``None``: contradictory options
  are refused). The server requires a client certificate signed by the
  federation CA.
* The sender of a message is the party name in the caller's verified
  certificate (SAN URI ``fedcredit://party/<name>``, equal to its CN), never a
  message field: a header claiming another sender is refused with
  PERMISSION_DENIED, as is any caller not in the current peer list
  (:meth:`GrpcTransport.set_peers` revokes a peer at its next message).
* A client checks the server's certificate against the peer's *party name*
  (target-name override of ``<name>.party.fedcredit.invalid``, a DNS
  namespace no ``--host`` may enter: :func:`fedcredit.certs.tls_server_name`),
  so a peer's address cannot be hijacked by another member of the federation.
* Every method of every servicer on the server passes one authorization
  check first (:class:`~fedcredit.transport.grpc.authz.Authorizer`).
* Messages are bounded (``max_message_bytes`` per message, ``MAX_CHUNK_BYTES``
  per chunk, ``max_buffer_bytes`` per sending peer for everything received but
  not yet taken, messages for jobs that never start here expire),
  checked against their SHA-256 digest (which covers the job id and tag,
  :func:`message_sha256`), and delivered at most once per
  ``(job, sender, tag)``: a retried push with the same message id is
  acknowledged as a duplicate; a second message under a taken tag is refused.
* No caller can starve another: every call of every service is admitted
  against a per-caller concurrency limit before its request is read
  (:class:`~.limits.CallLimits`), pushes are rate-limited per peer, refusals are
  logged at a bounded rate, and the port is bound without ``SO_REUSEPORT``.

Delivery
--------
Each message is one client-streaming ``Push`` RPC (chunks of at most
``MAX_CHUNK_BYTES``) with a deadline; ``UNAVAILABLE`` is retried with
exponential backoff and jitter, keeping the message id. Messages may arrive
before the receiver calls ``recv`` or even before it opened the job: they are
buffered. While a ``recv`` waits, the peer is pinged every
``probe_interval`` seconds; a peer that answers UNAVAILABLE for
``liveness_grace`` seconds (its process died) fails the wait with a
:class:`~fedcredit.errors.PeerError` naming it, well before the timeout.

Only :mod:`.options` sets gRPC message-size limits (:func:`grpc_options`).
"""

from .authz import MARK, RULES, Access, Authorizer
from .backend import GrpcBackend
from .framing import message_sha256
from .identity import client_channel, peer_identity
from .options import (
    CLIENT_OPTIONS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CHUNK_BYTES,
    MAX_CONTROL_REQUEST_BYTES,
    MAX_UNARY_REQUEST_BYTES,
    grpc_options,
    server_options,
)
from .server import ServerConfig, create_server
from .transport import GrpcTransport

__all__ = [
    "GrpcTransport",
    "GrpcBackend",
    "create_server",
    "ServerConfig",
    "peer_identity",
    "client_channel",
    "message_sha256",
    "grpc_options",
    "server_options",
    "CLIENT_OPTIONS",
    "MAX_UNARY_REQUEST_BYTES",
    "MAX_CONTROL_REQUEST_BYTES",
    "MAX_CHUNK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Authorizer",
    "RULES",
    "Access",
    "MARK",
]
