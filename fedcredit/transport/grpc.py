"""gRPC transport: tagged messages between parties over mutual TLS.

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
  check first (:class:`~fedcredit.transport.authz.Authorizer`).
* Messages are bounded (``max_message_bytes`` per message, ``MAX_CHUNK_BYTES``
  per chunk, ``max_buffer_bytes`` per sending peer for everything received but
  not yet taken, messages for jobs that never start here expire),
  checked against their SHA-256 digest (which covers the job id and tag,
  :func:`message_sha256`), and delivered at most once per
  ``(job, sender, tag)``: a retried push with the same message id is
  acknowledged as a duplicate; a second message under a taken tag is refused.
* No caller can starve another: every call of every service is admitted
  against a per-caller concurrency limit before its request is read
  (:class:`_CallLimits`), pushes are rate-limited per peer, refusals are
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

This is the only module that sets gRPC message-size limits (:func:`grpc_options`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from .._proto import federation_pb2 as pb
from .._proto import federation_pb2_grpc as pb_grpc
from ..certs import LoadedTls, TlsFiles, check_party_name, load_tls, party_name_from_cert, tls_server_name
from ..ids import is_name
from ..errors import ConfigError, FedcreditError, PeerError, ProtocolError
from .authz import Authorizer
from .base import DEFAULT_TIMEOUT, Backend, Channel

__all__ = [
    "GrpcTransport",
    "GrpcBackend",
    "peer_identity",
    "grpc_options",
    "server_options",
    "MAX_UNARY_REQUEST_BYTES",
    "MAX_CONTROL_REQUEST_BYTES",
    "MAX_CHUNK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
]

log = logging.getLogger("fedcredit.transport")

#: Largest payload slice in one Chunk. gRPC's own frame limit (see :func:`grpc_options`) is this plus headroom.
MAX_CHUNK_BYTES = 4 * 2**20
#: Chunk size used when sending.
DEFAULT_CHUNK_BYTES = 256 * 2**10  # measured: pipelines better than 1-4 MiB on loopback
#: Largest reassembled message a party accepts by default.
DEFAULT_MAX_MESSAGE_BYTES = 512 * 2**20
_FRAME_HEADROOM = 64 * 1024
_INSECURE_PARTY_MD = "x-fedcredit-insecure-party"
_PUSH = "/fedcredit.v1.Federation/Push"
_PING = "/fedcredit.v1.Federation/Ping"
_ID_RE = re.compile(r"^[A-Za-z0-9_.:=\-]{1,128}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:=\-]+(/[A-Za-z0-9_.:=\-]+)*$")
_MAX_TAG = 1024
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
#: Trailing metadata key on a refusal the sender may retry later (a rate limit, not a fault).
_RETRY_AFTER_MD = "fedcredit-retry-after"
#: Bytes charged per buffered message on top of its payload (bounds the bookkeeping of many tiny messages).
_MSG_OVERHEAD = 512
#: Jobs not (yet) opened here that one sender may have messages buffered for.
_MAX_ORPHAN_JOBS = 256
#: Retry-after hint (seconds) of a push deferred because the sender's receive budget is full.
_BUFFER_RETRY_AFTER = 1.0
#: Largest request (bytes) of a unary call on any service but Federation.Push (chunked): gRPC's frame limit.
MAX_UNARY_REQUEST_BYTES = MAX_CHUNK_BYTES + _FRAME_HEADROOM
#: Requests of the Control and Health services are small (a job spec, an event, a health check).
MAX_CONTROL_REQUEST_BYTES = 1 * 2**20
_SMALL_SERVICES = ("/fedcredit.v1.Control/", "/grpc.health.v1.Health/", "/fedcredit.v1.Health/")
#: Bucket of every caller with a federation certificate that is neither this party nor a listed peer.
_STRANGERS = "(unlisted)"


def server_options(max_concurrent_streams: int) -> list[tuple[str, int]]:
    """Options of a party's gRPC *server* (on top of :func:`grpc_options`).

    * ``grpc.so_reuseport = 0``: a second process cannot bind the port of a
      running party (the state-directory lock in :class:`fedcredit.party.Party`
      refuses it earlier; this also covers two parties on one address).
    * A TLS handshake must finish within 10 s, and a connection with no call
      for 5 minutes is closed: a peer cannot park half-open connections.
    * At most ``max_concurrent_streams`` calls per connection; further calls
      wait on the caller's side, not in this party's threads.
    """
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.server_handshake_timeout_ms", 10_000),
        ("grpc.max_connection_idle_ms", 300_000),
        ("grpc.max_concurrent_streams", int(max_concurrent_streams)),
    ]


def grpc_options() -> list[tuple[str, int]]:
    """gRPC channel/server options every fedcredit endpoint uses.

    The per-frame message limit is :data:`MAX_CHUNK_BYTES` plus headroom for
    the chunk header: larger payloads are chunked by the Federation service,
    and the Control/Health services only carry small messages.
    """
    limit = MAX_CHUNK_BYTES + _FRAME_HEADROOM
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


_CLIENT_OPTIONS = [
    # no grpc.min_reconnect_backoff_ms: gRPC uses it as the connect + TLS handshake deadline, and a 200 ms value
    # failed every first connection over a 50 ms/direction link (benchmarks/README.md, "Wide-area link profiles")
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 0),  # we retry ourselves, keeping the message id
]


# --------------------------------------------------------------------------- identity

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

    For use at the top of any servicer method on a :class:`GrpcTransport`
    server. gRPC has already verified the certificate chain against the
    federation CA (``require_client_auth``); this reads the party name from
    the certificate's SAN URI and checks it against the CN. A call without a
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
        if key == _INSECURE_PARTY_MD and isinstance(value, str) and value:
            return value
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate: mutual TLS is required")
    raise AssertionError("unreachable")  # pragma: no cover - context.abort raises


# --------------------------------------------------------------------------- wire helpers

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _encode_chunks(header: bytes, payload: bytes, chunk: int) -> Iterator[bytes]:
    """Serialize ``Chunk`` messages directly (one copy of each payload slice, no intermediate objects).

    Produces exactly the wire bytes of ``Chunk(header=..., seq=i, data=slice)``.
    """
    mv = memoryview(payload)
    n = len(payload)
    count = max(1, -(-n // chunk))
    for seq in range(count):
        part = mv[seq * chunk : (seq + 1) * chunk]
        pre = b""
        if seq == 0:
            pre = b"\x0a" + _varint(len(header)) + header
        else:
            pre = b"\x10" + _varint(seq)
        yield b"".join((pre, b"\x1a", _varint(len(part)), part))


def _identity(b: bytes) -> bytes:
    return b


def _chunk_count(n: int, chunk: int) -> int:
    return max(1, -(-n // chunk))


def _message_digest(job_id: str, tag: str):
    """SHA-256 state over a message's binding: domain, job id and tag (length-prefixed), then the payload.

    The digest in a header covers the job and the tag, so a message, replayed
    whole or re-sent by its own sender into another job or under another tag,
    does not verify there: it is refused (DATA_LOSS), not accepted as new.
    """
    h = hashlib.sha256(b"fedcredit-message-v1\0")
    for part in (job_id.encode("utf-8"), tag.encode("utf-8")):
        h.update(len(part).to_bytes(4, "big") + part)
    return h


def message_sha256(job_id: str, tag: str, payload: bytes) -> bytes:
    """The ``Header.sha256`` of ``payload`` sent as ``tag`` in job ``job_id`` (see :func:`_message_digest`)."""
    h = _message_digest(job_id, tag)
    h.update(payload)
    return h.digest()


# --------------------------------------------------------------------------- mailbox

class _Mailbox:
    """Messages received but not yet taken, keyed by (job, sender, tag).

    Each sender has its own budget of ``max_bytes`` (stored and reserved
    bytes plus a fixed overhead per message), so one peer's pushes can never
    fill the buffer another peer's job needs. A sender over its budget is
    *deferred* (RESOURCE_EXHAUSTED with a retry-after hint the fedcredit
    sender honours), not failed. Messages (and aborts) for jobs this party has
    not opened are kept at most ``orphan_ttl`` seconds and for at most
    :data:`_MAX_ORPHAN_JOBS` jobs per sender: a peer pushing into jobs that
    never run here only ever occupies its own, bounded, expiring share.
    """

    def __init__(self, max_bytes: int, *, orphan_ttl: float = 120.0, clock=time.monotonic):
        self.cv = threading.Condition()
        self.max_bytes = max_bytes  # per sender
        self.orphan_ttl = float(orphan_ttl)
        self._clock = clock
        self.used = 0  # stored + reserved bytes (+ overhead), all senders
        self.used_by: dict[str, int] = {}
        self.boxes: dict[tuple[str, str, str], bytes] = {}
        self.ids: dict[tuple[str, str, str], str] = {}  # message id stored/delivered under each key
        self.failed: dict[tuple[str, str], str] = {}  # (job, sender) -> reason ; sender "*" = whole job
        self.closed: set[str] = set()
        self.opened: set[str] = set()
        self.orphans: dict[str, dict[str, float]] = {}  # sender -> {job not opened here: first seen}
        self.shutdown_reason: str | None = None

    def _charge(self, sender: str, n: int) -> None:
        self.used += n
        left = self.used_by.get(sender, 0) + n
        if left > 0:
            self.used_by[sender] = left
        else:
            self.used_by.pop(sender, None)

    def _orphan(self, job: str, sender: str) -> None:
        """Note that ``sender`` sent something for ``job``, which is not open here (caller holds the lock)."""
        if job in self.opened:
            return
        jobs = self.orphans.setdefault(sender, {})
        if job not in jobs:
            if len(jobs) >= _MAX_ORPHAN_JOBS:
                self._expire()
            if len(jobs) >= _MAX_ORPHAN_JOBS:
                raise _Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{len(jobs)} jobs from {sender!r} that have not started here are already buffered",
                              retry_after=_BUFFER_RETRY_AFTER)
            jobs[job] = self._clock()

    def _expire(self) -> int:
        """Drop what was buffered for jobs not opened here within ``orphan_ttl`` (caller holds the lock)."""
        now, dropped = self._clock(), 0
        for sender, jobs in list(self.orphans.items()):
            for job, seen in list(jobs.items()):
                if now - seen < self.orphan_ttl:
                    continue
                del jobs[job]
                for key in [k for k in self.boxes if k[0] == job and k[1] == sender]:
                    self._charge(sender, -(len(self.boxes.pop(key)) + _MSG_OVERHEAD))
                    dropped += 1
                for key in [k for k in self.ids if k[0] == job and k[1] == sender]:
                    del self.ids[key]
                self.failed.pop((job, sender), None)
            if not jobs:
                del self.orphans[sender]
        if dropped:
            log.info("dropped %d buffered message(s) for jobs that did not start within %gs", dropped, self.orphan_ttl)
        return dropped

    # -- server side
    def admit(self, job: str, sender: str, tag: str, message_id: str, size: int) -> str:
        """Check a header before reading its chunks: 'new' (bytes reserved), 'duplicate', or raise _Refuse."""
        with self.cv:
            if self.shutdown_reason is not None:
                raise _Refuse(grpc.StatusCode.UNAVAILABLE, "party is shutting down")
            if job in self.closed:
                raise _Refuse(grpc.StatusCode.FAILED_PRECONDITION, f"job {job!r} is closed on this party")
            key = (job, sender, tag)
            prev = self.ids.get(key)
            if prev == message_id:
                return "duplicate"
            if prev is not None:
                raise _Refuse(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"a different message was already received under tag {tag!r} in job {job!r} (replay?)",
                )
            need = size + _MSG_OVERHEAD
            if self.used_by.get(sender, 0) + need > self.max_bytes:
                self._expire()
            held = self.used_by.get(sender, 0)
            if held + need > self.max_bytes:
                raise _Refuse(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"receive buffer full for {sender!r} ({held} of {self.max_bytes} bytes held); message of "
                    f"{size} bytes deferred",
                    retry_after=_BUFFER_RETRY_AFTER,
                )
            self._orphan(job, sender)
            self._charge(sender, need)
            return "new"

    def release(self, sender: str, size: int) -> None:
        with self.cv:
            self._charge(sender, -(size + _MSG_OVERHEAD))

    def put(self, job: str, sender: str, tag: str, message_id: str, payload: bytes, reserved: int) -> bool:
        """Store a reassembled message; False if a concurrent duplicate won the race."""
        with self.cv:
            self._charge(sender, -(reserved + _MSG_OVERHEAD))
            key = (job, sender, tag)
            if job in self.closed or key in self.ids:
                return False
            self.ids[key] = message_id
            self.boxes[key] = payload
            self._charge(sender, len(payload) + _MSG_OVERHEAD)
            self.cv.notify_all()
            return True

    def fail(self, job: str, sender: str, reason: str) -> None:
        with self.cv:
            if sender != "*":
                self._orphan(job, sender)
            self.failed.setdefault((job, sender), reason)
            self.cv.notify_all()

    def close_job(self, job: str) -> None:
        with self.cv:
            self.closed.add(job)
            self.opened.discard(job)
            for key in [k for k in self.boxes if k[0] == job]:
                self._charge(key[1], -(len(self.boxes.pop(key)) + _MSG_OVERHEAD))
            for key in [k for k in self.ids if k[0] == job]:
                del self.ids[key]
            for key in [k for k in self.failed if k[0] == job]:
                del self.failed[key]
            for jobs in self.orphans.values():
                jobs.pop(job, None)
            self.cv.notify_all()

    def open_job(self, job: str) -> None:
        with self.cv:
            self.closed.discard(job)
            self.opened.add(job)
            for jobs in self.orphans.values():  # what arrived early now belongs to a running job
                jobs.pop(job, None)

    def shutdown(self, reason: str) -> None:
        with self.cv:
            self.shutdown_reason = reason
            self.cv.notify_all()

    # -- receiver side
    def take(
        self,
        job: str,
        sender: str,
        tag: str,
        timeout: float,
        *,
        me: str,
        idle: Callable[[], None] | None = None,
        idle_every: float = 1.0,
    ) -> bytes:
        deadline = time.monotonic() + timeout
        next_idle = time.monotonic() + idle_every
        key = (job, sender, tag)
        while True:
            with self.cv:
                while True:
                    payload = self.boxes.pop(key, None)
                    if payload is not None:
                        self._charge(sender, -(len(payload) + _MSG_OVERHEAD))
                        return payload
                    if job in self.closed:
                        raise PeerError(f"job {job!r} was closed on {me!r} while waiting for {tag!r} from {sender!r}", peer=sender)
                    if (job, sender) in self.failed:
                        raise PeerError(self.failed[(job, sender)], peer=sender)
                    if (job, "*") in self.failed:
                        raise PeerError(self.failed[(job, "*")], peer=me)
                    if self.shutdown_reason is not None:
                        raise PeerError(
                            f"transport of {me!r} stopped ({self.shutdown_reason}) while waiting for {tag!r} from {sender!r}",
                            peer=sender,
                        )
                    now = time.monotonic()
                    if now >= deadline:
                        raise PeerError(f"timed out after {timeout:g}s waiting for {tag!r} from {sender!r}", peer=sender)
                    if idle is not None and now >= next_idle:
                        break
                    self.cv.wait(min(deadline, next_idle if idle is not None else deadline, now + 1.0) - now)
            idle()  # outside the lock; raises PeerError when the peer is gone
            next_idle = time.monotonic() + idle_every


class _Refuse(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, retry_after: float | None = None):
        self.code, self.details, self.retry_after = code, details, retry_after
        super().__init__(details)


class _PeerLimits:
    """Per-peer fairness on the Federation service: a push rate (token bucket) and concurrent pushes.

    One peer, however busy or hostile, can neither flood a party with messages
    nor hold all its server threads: pushes beyond ``rate`` per second (bursts
    of ``burst``) or beyond ``inflight`` at once are refused with
    RESOURCE_EXHAUSTED and a retry-after hint, which the fedcredit sender honours
    (the same message id, so nothing is delivered twice). The limits are per
    sending party, so other peers are not slowed.
    """

    def __init__(self, rate: float, burst: int, inflight: int, clock=time.monotonic):
        self.rate, self.burst, self.inflight = float(rate), int(burst), int(inflight)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}  # peer -> (tokens, at)
        self._active: dict[str, int] = {}

    def acquire(self, peer: str) -> None:
        """Take one push slot for ``peer`` or raise :class:`_Refuse`; pair with :meth:`release`."""
        now = self._clock()
        with self._lock:
            tokens, at = self._tokens.get(peer, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._tokens[peer] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise _Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"rate limit: more than {self.rate:g} messages/s (burst {self.burst}) from {peer!r}; "
                              f"retry in {wait:.2f}s", retry_after=wait)
            active = self._active.get(peer, 0)
            if active >= self.inflight:
                self._tokens[peer] = (tokens, now)
                raise _Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"rate limit: {active} pushes from {peer!r} already in progress (limit {self.inflight})",
                              retry_after=0.05)
            self._tokens[peer] = (tokens - 1.0, now)
            self._active[peer] = active + 1

    def release(self, peer: str) -> None:
        with self._lock:
            n = self._active.get(peer, 1) - 1
            if n > 0:
                self._active[peer] = n
            else:
                self._active.pop(peer, None)


class _LogThrottle:
    """At most ``per_minute`` log lines per key (a peer and what it did); the rest are counted and summarised.

    A flooding peer must not turn this party's log into its disk quota: each
    refusal is cheap to send and a log line costs ~200 bytes.
    """

    def __init__(self, per_minute: int = 20, clock=time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._win: dict[str, list] = {}  # key -> [window start, lines logged, suppressed]

    def allow(self, key: str) -> tuple[bool, int]:
        """(log this one?, how many were suppressed before it)."""
        now = self._clock()
        with self._lock:
            w = self._win.get(key)
            if w is None or now - w[0] >= 60.0:
                if len(self._win) > 4096:
                    self._win.clear()
                suppressed = w[2] if w is not None else 0
                self._win[key] = [now, 1, 0]
                return True, suppressed
            if w[1] < self.per_minute:
                w[1] += 1
                return True, 0
            w[2] += 1
            return False, 0


_LOG_THROTTLE = _LogThrottle()


def _log_limited(level: int, key: str, msg: str, *args) -> None:
    ok, suppressed = _LOG_THROTTLE.allow(key)
    if ok:
        if suppressed:
            msg += " (%d similar message(s) suppressed in the last minute)"
            args = (*args, suppressed)
        log.log(level, msg, *args)


class _CallLimits(grpc.ServerInterceptor):
    """Per-caller concurrency on *every* RPC of a party's server, checked before the request is read.

    gRPC's synchronous server reads the request of a unary call inside a
    worker thread, so a caller that opens calls and never sends the request
    (or a stream that never ends) holds threads until its own deadline. This
    interceptor re-registers every method as request-streaming, so it runs
    *before* the request arrives: it identifies the caller from its
    certificate (:func:`peer_identity`) and admits at most ``per_peer``
    concurrent calls per listed peer (and this party's own operator), and
    ``strangers`` for all other certificate holders together (revoked or
    unlisted parties); a caller over its limit gets RESOURCE_EXHAUSTED with a
    retry-after hint at once. So no caller can hold more than its share of the
    server threads, whatever it sends or does not send. The request is then
    read with a size bound (:data:`MAX_UNARY_REQUEST_BYTES`, and
    :data:`MAX_CONTROL_REQUEST_BYTES` on the Control and Health services)
    before it is parsed; ``Federation.Push`` bounds its chunks itself.
    """

    def __init__(self, transport: "GrpcTransport", per_peer: int, strangers: int, precheck=None):
        self.t, self.per_peer, self.strangers = transport, int(per_peer), int(strangers)
        #: ``precheck(method, context)``: who may call at all (the authorizer), run before a slot is taken
        #: and before the request is read, so a stranger or revoked peer cannot hold a call open
        self.precheck = precheck
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}

    def _enter(self, context, method: str) -> str:
        if self.precheck is not None:
            self.precheck(method, context)  # aborts the call
        name = peer_identity(context)
        with self.t._lock:
            listed = name == self.t.party or name in self.t._peers
        bucket, limit = (name, self.per_peer) if listed else (_STRANGERS, self.strangers)
        with self._lock:
            n = self._active.get(bucket, 0)
            if n < limit:
                self._active[bucket] = n + 1
                return bucket
        _log_limited(logging.WARNING, f"calls:{self.t.party}:{bucket}", "%s refused a call to %s from %r: %d calls of %s in progress",
                     self.t.party, method, name, n, "unlisted parties" if not listed else "that party")
        context.set_trailing_metadata(((_RETRY_AFTER_MD, "0.100"),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"too many concurrent calls from {name!r} ({n}, limit {limit}); retry later")
        raise AssertionError("unreachable")  # pragma: no cover - context.abort raises

    def _leave(self, bucket: str) -> None:
        with self._lock:
            n = self._active.get(bucket, 1) - 1
            if n > 0:
                self._active[bucket] = n
            else:
                self._active.pop(bucket, None)

    def intercept_service(self, continuation, handler_call_details):
        h = continuation(handler_call_details)
        if h is None:
            return None
        method = handler_call_details.method
        limits = self
        if h.request_streaming:
            inner = h.stream_stream if h.response_streaming else h.stream_unary

            @functools.wraps(inner)  # keeps the inner handler's marks (e.g. the authorizer's)
            def streaming(request_iterator, context):
                bucket = limits._enter(context, method)
                try:
                    return inner(request_iterator, context)
                finally:
                    limits._leave(bucket)

            @functools.wraps(inner)  # keeps the inner handler's marks (e.g. the authorizer's)
            def streaming_gen(request_iterator, context):
                bucket = limits._enter(context, method)
                try:
                    yield from inner(request_iterator, context)
                finally:
                    limits._leave(bucket)

            if h.response_streaming:
                return grpc.stream_stream_rpc_method_handler(streaming_gen, h.request_deserializer, h.response_serializer)
            return grpc.stream_unary_rpc_method_handler(streaming, h.request_deserializer, h.response_serializer)

        inner = h.unary_stream if h.response_streaming else h.unary_unary
        parse = h.request_deserializer or _identity
        cap = MAX_CONTROL_REQUEST_BYTES if method.startswith(_SMALL_SERVICES) else MAX_UNARY_REQUEST_BYTES

        def one(request_iterator, context):
            raw = next(request_iterator, None)
            if raw is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method} requires exactly one request message")
            if len(raw) > cap:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"request of {len(raw)} bytes exceeds the limit of {cap} bytes for {method}")
            try:
                return parse(raw)
            except Exception:  # noqa: BLE001 - any decoding failure is the caller's fault
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request of {method} is not a valid message")

        @functools.wraps(inner)  # keeps the inner handler's marks (e.g. the authorizer's)
        def unary(request_iterator, context):
            bucket = limits._enter(context, method)
            try:
                return inner(one(request_iterator, context), context)
            finally:
                limits._leave(bucket)

        @functools.wraps(inner)  # keeps the inner handler's marks (e.g. the authorizer's)
        def unary_gen(request_iterator, context):
            bucket = limits._enter(context, method)
            try:
                yield from inner(one(request_iterator, context), context)
            finally:
                limits._leave(bucket)

        if h.response_streaming:
            return grpc.stream_stream_rpc_method_handler(unary_gen, None, h.response_serializer)
        return grpc.stream_unary_rpc_method_handler(unary, None, h.response_serializer)


# --------------------------------------------------------------------------- server

class _FederationServicer(pb_grpc.FederationServicer):
    def __init__(self, transport: "GrpcTransport"):
        self.t = transport

    def Push(self, request_iterator, context):
        sender = self.t.authorize(context)
        self.t._mark_alive(sender)
        try:
            self.t._limits.acquire(sender)
            try:
                return self._push(sender, request_iterator, context)
            finally:
                self.t._limits.release(sender)
        except _Refuse as r:
            if r.retry_after is not None:
                _log_limited(logging.INFO, f"defer:{self.t.party}:{sender}", "%s deferred a message from %s: %s", self.t.party,
                             sender, r.details)
                context.set_trailing_metadata(((_RETRY_AFTER_MD, f"{r.retry_after:.3f}"),))
            else:
                _log_limited(logging.WARNING, f"refuse:{self.t.party}:{sender}", "%s refused a message from %s: %s", self.t.party,
                             sender, r.details)
            context.abort(r.code, r.details)

    def _push(self, sender: str, requests, context) -> pb.PushAck:
        first = next(requests, None)
        if first is None:
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, "empty push: no chunks")
        if not first.HasField("header") or first.seq != 0:
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must carry the header and seq 0")
        h = first.header
        if h.sender != sender:
            raise _Refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                f"message claims sender {h.sender!r} but the client certificate is {sender!r}",
            )
        if not is_name(h.job_id):  # the one identifier grammar (fedcredit.ids): no '.', '..', '/', controls
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"invalid job id {h.job_id[:140]!r}")
        if self.t.job_guard is not None:  # the sender must have a role in a job this party knows
            try:
                self.t.job_guard(sender, h.job_id)
            except FedcreditError as exc:
                raise _Refuse(grpc.StatusCode.PERMISSION_DENIED, str(exc)[:2000]) from None
        if h.kind == pb.MESSAGE_KIND_ABORT:
            reason = h.reason[:2000] or "no reason given"
            _log_limited(logging.INFO, f"abort:{self.t.party}:{sender}", "%s: peer %s aborted job %s: %s", self.t.party, sender,
                         h.job_id, reason)
            self.t._mailbox.fail(h.job_id, sender, f"peer {sender!r} aborted job {h.job_id!r}: {reason}")
            return pb.PushAck()
        if h.kind != pb.MESSAGE_KIND_DATA:
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"unknown message kind {h.kind}")
        if len(h.tag) > _MAX_TAG or not _TAG_RE.fullmatch(h.tag) or any(x in (".", "..") for x in h.tag.split("/")):
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"invalid tag {h.tag[:140]!r}")
        if not _ID_RE.fullmatch(h.message_id):
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, "invalid message id")
        if len(h.sha256) != 32:
            raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, "header sha256 must be 32 bytes")
        total = h.total_size
        if total > self.t.max_message_bytes:
            raise _Refuse(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message {h.tag!r} of {total} bytes exceeds this party's limit of {self.t.max_message_bytes} bytes",
            )
        status = self.t._mailbox.admit(h.job_id, sender, h.tag, h.message_id, total)
        if status == "duplicate":
            return pb.PushAck(duplicate=True, received_bytes=total)
        try:
            parts: list[bytes] = []
            got = 0
            digest = _message_digest(h.job_id, h.tag)
            expected = 0
            chunk = first
            while chunk is not None:
                if chunk.seq != expected:
                    raise _Refuse(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"chunk {chunk.seq} of {h.tag!r} out of order: expected chunk {expected} (missing chunk?)",
                    )
                if expected and chunk.HasField("header"):
                    raise _Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"chunk {expected} of {h.tag!r} repeats the header")
                data = chunk.data
                if len(data) > MAX_CHUNK_BYTES:
                    raise _Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED, f"chunk of {len(data)} bytes exceeds {MAX_CHUNK_BYTES}")
                got += len(data)
                if got > total:
                    raise _Refuse(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"message {h.tag!r} carries more than its declared {total} bytes",
                    )
                digest.update(data)
                parts.append(data)
                expected += 1
                chunk = next(requests, None)
            if got != total or (h.chunk_count and expected != h.chunk_count):
                raise _Refuse(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"incomplete message {h.tag!r}: {got} of {total} bytes in {expected} of {h.chunk_count} chunks",
                )
            if not secrets.compare_digest(digest.digest(), h.sha256):
                raise _Refuse(grpc.StatusCode.DATA_LOSS,
                              f"message {h.tag!r} does not match its sha256 digest (over job id, tag and payload)")
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            del parts
        except BaseException:
            self.t._mailbox.release(sender, total)
            raise
        stored = self.t._mailbox.put(h.job_id, sender, h.tag, h.message_id, payload, total)
        return pb.PushAck(duplicate=not stored, received_bytes=total)

    def Ping(self, request, context):
        self.t._mark_alive(self.t.authorize(context))
        return pb.PingReply(party=self.t.party)


# --------------------------------------------------------------------------- client metadata (insecure mode only)

class _PartyMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the claimed party name to every call on an insecure channel (tests only)."""

    def __init__(self, party: str):
        self.md = (_INSECURE_PARTY_MD, party)

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


# --------------------------------------------------------------------------- transport

class GrpcTransport:
    """A party's gRPC endpoint: Federation server, mTLS client channels, per-job Channels.

    Parameters
    ----------
    party : str
        This party's name; must match the name in ``tls.cert``.
    listen : str
        ``"host:port"`` to bind (port 0 picks a free port; see :meth:`start`).
    tls : TlsFiles or None
        CA, certificate and key. Required unless ``insecure=True``.
    peers : dict of str to str
        ``{party name: "host:port"}`` of every party this one talks to. Only
        these may send to it.
    insecure : bool, default=False
        Plaintext without authentication, for local experiments only. The
        sender is then whatever the caller claims. Must not be combined with
        ``tls``.
    max_message_bytes : int, default=512 MiB
        Largest message this party sends or accepts.
    deadline : float, default=60
        Seconds allowed for one push (all its chunks) and for a never-seen
        peer to come up.
    retries : int, default=5
        Extra attempts of a push that failed with UNAVAILABLE (backoff
        0.2 s doubling to 5 s, with jitter; the same message id, so a push
        that did arrive is not delivered twice).
    max_buffer_bytes : int, optional
        Bound on bytes received from *one* peer but not yet taken by ``recv``
        (all its jobs together; each peer has its own budget, so memory is
        bounded by peers times this). A push over it is deferred with a
        retry-after hint. Defaults to ``2 * max_message_bytes``.
    chunk_bytes : int, default=256 KiB
        Payload bytes per chunk sent (at most ``MAX_CHUNK_BYTES``).
    probe_interval : float, default=1
        While a ``recv`` waits, ping the peer this often.
    liveness_grace : float, default=2
        A peer seen alive before that answers UNAVAILABLE for this long is
        declared gone and the waiting ``recv`` fails.
    max_workers : int, default=64
        Server threads (each call in progress holds one). At most
        ``4 * max_workers`` calls are admitted at once; beyond that gRPC
        answers RESOURCE_EXHAUSTED without using a thread.
    peer_rate : float, default=2000
        Pushes per second one peer may send (token bucket refilled at this
        rate, bursts up to ``peer_burst``); beyond it the push is deferred:
        the sender is told to retry after a moment (and does, within
        ``retries``). Legitimate jobs send far fewer.
    peer_burst : int, default=4000
    peer_inflight : int, optional
        Concurrent pushes one peer may have in progress; defaults to
        ``peer_calls``.
    peer_calls : int, optional
        Concurrent calls of any RPC (pushes, pings, control, health, streams)
        one listed peer, or this party's own operator, may have in progress,
        counted before the request is read (see :class:`_CallLimits`);
        defaults to 8 more than a quarter of the server threads or than
        ``peer_inflight``, whichever is larger, and at most half the threads.
        Size ``max_workers`` so that every caller's share fits at once
        (``(peers + 1) * peer_calls + stranger_calls``, as the party does):
        then no caller, however it floods, delays another.
    stranger_calls : int, default=4
        The same, for every other holder of a federation certificate together
        (unlisted or revoked parties; they are refused anyway, this bounds
        what their refusals cost).
    orphan_ttl : float, default=120
        Seconds messages for a job that has not been opened here are kept
        before they are dropped (a peer's pushes for jobs that never run).

    Examples
    --------
    >>> t = GrpcTransport(party="bank", listen="127.0.0.1:0", tls=tls,
    ...                   peers={"gov": "127.0.0.1:7002"})        # doctest: +SKIP
    >>> port = t.start()                                           # doctest: +SKIP
    >>> ch = t.channel("job-1")                                    # doctest: +SKIP
    >>> ch.send("gov", "hello", {"rows": 3})                       # doctest: +SKIP
    >>> t.stop()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        party: str,
        listen: str,
        tls: TlsFiles | None,
        peers: dict[str, str],
        insecure: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        deadline: float = 60.0,
        retries: int = 5,
        max_buffer_bytes: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        probe_interval: float = 1.0,
        liveness_grace: float = 2.0,
        max_workers: int = 64,
        peer_rate: float = 2000.0,
        peer_burst: int = 4000,
        peer_inflight: int | None = None,
        peer_calls: int | None = None,
        stranger_calls: int = 4,
        orphan_ttl: float = 120.0,
    ):
        check_party_name(party)
        if type(insecure) is not bool:
            raise ConfigError(f"insecure must be a bool, got {type(insecure).__name__}")
        if insecure and tls is not None:
            raise ConfigError("contradictory TLS options: insecure=True together with tls files; choose one")
        if not insecure and tls is None:
            raise ConfigError(
                "mutual TLS is required: pass tls=TlsFiles(ca, cert, key) "
                "(insecure=True exists for local experiments only)"
            )
        if tls is not None and not isinstance(tls, TlsFiles):
            raise ConfigError(f"tls must be a TlsFiles, got {type(tls).__name__}")
        _check_int("max_message_bytes", max_message_bytes, 1)
        _check_int("retries", retries, 0)
        _check_int("chunk_bytes", chunk_bytes, 1, MAX_CHUNK_BYTES)
        _check_int("max_workers", max_workers, 2)
        _check_int("peer_burst", peer_burst, 1)
        # no single caller may hold every server thread: a push, a ping or a control call of another gets through
        if peer_inflight is not None:
            _check_int("peer_inflight", peer_inflight, 1, max_workers - 2)
        if peer_calls is None:
            peer_calls = max(max_workers // 4, 0 if peer_inflight is None else peer_inflight) + 8
            peer_calls = max(1, min(peer_calls, max_workers // 2))
        _check_int("peer_calls", peer_calls, 1, max_workers - 2)
        _check_int("stranger_calls", stranger_calls, 1, max_workers - 2)
        if peer_inflight is None:
            peer_inflight = peer_calls
        for name, v in (("deadline", deadline), ("probe_interval", probe_interval), ("liveness_grace", liveness_grace),
                        ("peer_rate", peer_rate), ("orphan_ttl", orphan_ttl)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"The {name!r} parameter of GrpcTransport must be a number > 0. Got {v!r} instead.")
        if max_buffer_bytes is None:
            max_buffer_bytes = 2 * max_message_bytes
        _check_int("max_buffer_bytes", max_buffer_bytes, max_message_bytes)

        self.party = party
        self.listen = listen
        self.insecure = insecure
        self.max_message_bytes = max_message_bytes
        self.deadline = float(deadline)
        self.retries = retries
        self.chunk_bytes = chunk_bytes
        self.probe_interval = float(probe_interval)
        self.liveness_grace = float(liveness_grace)
        self._tls: LoadedTls | None = load_tls(tls, expect_party=party) if tls is not None else None
        self._tls_served = self._tls
        self._lock = threading.RLock()
        self._peers: dict[str, str] = self._check_peers(peers)
        self._channels: dict[str, grpc.Channel] = {}
        self._seen_alive: set[str] = set()
        self._down_since: dict[str, float] = {}
        self._mailbox = _Mailbox(max_buffer_bytes, orphan_ttl=orphan_ttl)
        self._limits = _PeerLimits(peer_rate, peer_burst, peer_inflight)
        self._port: int | None = None
        self._stopped = False
        #: set by the party: why a caller is not a peer (e.g. revoked, when), and whether it has a role in a job
        self.refusal_reason: Callable[[str], str | None] | None = None
        self.job_guard: Callable[[str, str], None] | None = None
        self._authorizer = Authorizer(self)
        self._calls = _CallLimits(self, peer_calls, stranger_calls, precheck=self._authorizer.check)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"fedcredit-{party}"),
            options=grpc_options() + server_options(peer_calls),
            # outermost first: the per-caller concurrency share is taken before the request is read
            # (_CallLimits), then every method of every servicer passes one authorization check (authz.py)
            interceptors=(self._calls, self._authorizer),
            maximum_concurrent_rpcs=4 * max_workers,
        )
        pb_grpc.add_FederationServicer_to_server(_FederationServicer(self), self._server)

    # -- lifecycle -----------------------------------------------------------
    @property
    def server(self) -> grpc.Server:
        """The gRPC server; add Control/Health servicers to it before :meth:`start`."""
        return self._server

    @property
    def port(self) -> int | None:
        """The bound port once started."""
        return self._port

    @property
    def peers(self) -> dict[str, str]:
        """Current ``{peer: address}``."""
        with self._lock:
            return dict(self._peers)

    def start(self) -> int:
        """Bind ``listen`` and start serving; returns the bound port.

        Raises
        ------
        ConfigError
            The address cannot be bound.
        """
        with self._lock:
            if self._port is not None:
                raise ConfigError(f"transport of {self.party!r} already started on port {self._port}")
            if self._stopped:
                raise ConfigError(f"transport of {self.party!r} was stopped; create a new one")
            try:
                if self._tls is None:
                    port = self._server.add_insecure_port(self.listen)
                else:
                    # the certificate configuration is fetched for each new handshake, so reload_tls() swaps the
                    # certificate, key and CA bundle without a restart (connections already open keep theirs)
                    creds = grpc.dynamic_ssl_server_credentials(
                        self._server_cert_config(), self._fetch_cert_config, require_client_authentication=True)
                    port = self._server.add_secure_port(self.listen, creds)
            except RuntimeError as exc:
                raise ConfigError(f"cannot listen on {self.listen!r}: {exc}") from None
            if not port:
                raise ConfigError(f"cannot listen on {self.listen!r} (address in use or invalid)")
            self._server.start()
            self._port = port
            log.info("%s listening on port %d (%s)", self.party, port, "INSECURE" if self.insecure else "mTLS")
            return port

    def _server_cert_config(self):
        t = self._tls
        return grpc.ssl_server_certificate_configuration([(t.key_pem, t.cert_pem)], root_certificates=t.ca_pem)

    def _fetch_cert_config(self):
        """gRPC's fetcher: a new configuration once after :meth:`reload_tls`, else None (keep the current one)."""
        with self._lock:
            if self._tls_served is self._tls:
                return None
            self._tls_served = self._tls
        return self._server_cert_config()

    def reload_tls(self, tls: TlsFiles) -> LoadedTls:
        """Serve and dial with new TLS files from now on, without a restart.

        The files are checked first (:func:`~fedcredit.certs.load_tls`: an
        expired, foreign or mismatched certificate raises ConfigError and
        nothing changes). New handshakes on our port present the new
        certificate and accept client certificates from any CA of the new
        bundle; client channels are re-created with the new credentials, the
        old ones closed a little later so calls in flight finish.
        """
        loaded = load_tls(tls, expect_party=self.party)
        with self._lock:
            if self._tls is None:
                raise ConfigError(f"transport of {self.party!r} runs without TLS; nothing to reload")
            self._tls = loaded
            old, self._channels = list(self._channels.values()), {}
        timer = threading.Timer(max(30.0, 2 * self.deadline), lambda: [ch.close() for ch in old])
        timer.daemon = True
        timer.start()
        log.info("%s: TLS certificate and CA bundle reloaded", self.party)
        return loaded

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving (in-flight pushes get ``grace`` seconds), fail pending receives, close client channels."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            channels, self._channels = list(self._channels.values()), {}
        self._mailbox.shutdown("stopped")
        try:
            self._server.stop(grace).wait(grace + 1.0)
        finally:
            for ch in channels:
                ch.close()

    def __enter__(self) -> "GrpcTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- peers -----------------------------------------------------------------
    def _check_peers(self, peers: dict[str, str]) -> dict[str, str]:
        if not isinstance(peers, dict):
            raise ConfigError(f"peers must be a dict of name -> 'host:port', got {type(peers).__name__}")
        out = {}
        for name, addr in peers.items():
            check_party_name(name)
            if name == self.party:
                raise ConfigError(f"party {name!r} cannot list itself as a peer")
            if not isinstance(addr, str) or ":" not in addr:
                raise ConfigError(f"address of peer {name!r} must be 'host:port', got {addr!r}")
            out[name] = addr
        return out

    def set_peers(self, peers: dict[str, str]) -> None:
        """Replace the peer list without a restart.

        A removed peer is refused from its next message or call on; a peer
        whose address changed gets a new client channel.
        """
        new = self._check_peers(peers)
        with self._lock:
            stale = [p for p, ch in self._channels.items() if new.get(p) != self._peers.get(p)]
            old_channels = [self._channels.pop(p) for p in stale]
            self._peers = new
            for p in stale:
                self._seen_alive.discard(p)
                self._down_since.pop(p, None)
        for ch in old_channels:
            ch.close()
        log.info("%s: peers set to %s", self.party, sorted(new))

    def authorize(self, context: grpc.ServicerContext) -> str:
        """The caller's party name (from its certificate), aborting the call unless it is a current peer."""
        name = peer_identity(context)
        with self._lock:
            listed = name in self._peers
        if not listed:
            log.warning("%s refused a call from unlisted party %r", self.party, name)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"party {name!r} is not a peer of {self.party!r}")
        return name

    def grpc_channel(self, peer: str) -> grpc.Channel:
        """The (cached) client channel to ``peer``: mTLS, server certificate checked against the peer's name."""
        with self._lock:
            if self._stopped:
                raise PeerError(f"transport of {self.party!r} is stopped", peer=peer)
            ch = self._channels.get(peer)
            if ch is not None:
                return ch
            addr = self._peers.get(peer)
            if addr is None:
                raise PeerError(f"{peer!r} is not a peer of {self.party!r} (peers: {', '.join(sorted(self._peers))})", peer=peer)
            options = grpc_options() + _CLIENT_OPTIONS
            if self._tls is None:
                ch = grpc.intercept_channel(grpc.insecure_channel(addr, options=options), _PartyMetadata(self.party))
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self._tls.ca_pem,
                    private_key=self._tls.key_pem,
                    certificate_chain=self._tls.cert_pem,
                )
                options += [("grpc.ssl_target_name_override", tls_server_name(peer)), ("grpc.default_authority", peer)]
                ch = grpc.secure_channel(addr, creds, options=options)
            self._channels[peer] = ch
            return ch

    # -- jobs ------------------------------------------------------------------
    def channel(self, job_id: str, *, default_timeout: float = DEFAULT_TIMEOUT) -> Channel:
        """A :class:`Channel` for job ``job_id`` over this transport.

        Messages for the job that arrived earlier are already waiting.
        ``Channel.close()`` ends the job here: its buffered messages are
        dropped and later messages for it are refused.
        """
        if not is_name(job_id):
            raise ConfigError(f"invalid job id {job_id!r}: 1-63 characters of [a-z0-9_-], starting with a letter or digit")
        self._mailbox.open_job(job_id)
        return Channel(GrpcBackend(self, job_id), default_timeout=default_timeout)

    # -- client side of the Federation service ----------------------------------
    def _push(
        self,
        peer: str,
        job: str,
        tag: str,
        payload: bytes,
        *,
        kind: int = pb.MESSAGE_KIND_DATA,
        reason: str = "",
        deadline: float | None = None,
        retries: int | None = None,
    ) -> pb.PushAck:
        if len(payload) > self.max_message_bytes:
            raise ProtocolError(
                f"message {tag!r} of {len(payload)} bytes exceeds max_message_bytes={self.max_message_bytes}; not sent"
            )
        header = pb.Header(
            job_id=job,
            tag=tag,
            message_id=secrets.token_hex(16),
            sender=self.party,
            total_size=len(payload),
            sha256=message_sha256(job, tag, payload),
            chunk_count=_chunk_count(len(payload), self.chunk_bytes),
            kind=kind,
            reason=reason,
        ).SerializeToString()
        deadline = self.deadline if deadline is None else deadline
        retries = self.retries if retries is None else retries
        delay = 0.2
        attempt = 0
        while True:
            call = self.grpc_channel(peer).stream_unary(
                _PUSH, request_serializer=_identity, response_deserializer=pb.PushAck.FromString
            )
            try:
                ack = call(_encode_chunks(header, payload, self.chunk_bytes), timeout=deadline)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = exc.details() if hasattr(exc, "details") else str(exc)
                after = _retry_after(exc) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
                if after is not None and attempt < retries and not self._stopped:
                    attempt += 1  # deferred by the peer's rate limit: wait as told (bounded), same message id
                    time.sleep(min(max(after, 0.01), 5.0) * (1.0 + secrets.randbelow(500) / 1000))
                    continue
                if code in _RETRYABLE and attempt < retries and not self._stopped:
                    attempt += 1
                    time.sleep(min(delay, 5.0) * (0.5 + secrets.randbelow(1000) / 1000))
                    delay *= 2
                    continue
                raise self._error(peer, code, details, f"sending {tag!r}", attempts=attempt + 1) from None
            except ValueError as exc:  # channel closed under us (set_peers/stop)
                raise PeerError(f"sending {tag!r} to {peer!r} failed: {exc}", peer=peer) from None
            self._mark_alive(peer)
            return ack

    def _error(self, peer: str, code, details: str, what: str, attempts: int = 1) -> PeerError:
        name = getattr(code, "name", str(code))
        if code == grpc.StatusCode.UNAVAILABLE:
            msg = f"peer {peer!r} is unreachable ({details}); {what} failed after {attempts} attempt(s)"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            msg = f"peer {peer!r} did not answer within {self.deadline:g}s; {what} failed"
        else:
            msg = f"peer {peer!r} refused {what}: {details} ({name})"
        return PeerError(msg, peer=peer)

    def _mark_alive(self, peer: str) -> None:
        with self._lock:
            self._seen_alive.add(peer)
            self._down_since.pop(peer, None)

    def _probe(self, peer: str, job: str) -> None:
        """Ping ``peer``; raise PeerError if it is gone (see ``liveness_grace``)."""
        try:
            call = self.grpc_channel(peer).unary_unary(
                _PING, request_serializer=pb.PingRequest.SerializeToString, response_deserializer=pb.PingReply.FromString
            )
            call(pb.PingRequest(job_id=job), timeout=min(5.0, self.deadline))
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                raise self._error(peer, code, exc.details(), "our liveness probe") from None
            if code != grpc.StatusCode.UNAVAILABLE:
                return  # busy or slow: keep waiting
            now = time.monotonic()
            with self._lock:
                since = self._down_since.setdefault(peer, now)
                seen = peer in self._seen_alive
            if now - since >= (self.liveness_grace if seen else self.deadline):
                raise PeerError(
                    f"peer {peer!r} is unreachable for {now - since:.1f}s ({exc.details()}): its process stopped or the network failed",
                    peer=peer,
                ) from None
        except ValueError:
            return  # channel replaced concurrently; next probe uses the new one
        else:
            self._mark_alive(peer)

    def _abort_job(self, job: str, reason: str) -> None:
        reason = reason[:2000]
        with self._lock:
            peers = list(self._peers)
        self._mailbox.fail(job, "*", f"job {job!r} was aborted on {self.party!r}: {reason}")

        def notify(peer: str) -> None:
            try:
                self._push(
                    peer, job, "abort", b"", kind=pb.MESSAGE_KIND_ABORT, reason=reason,
                    deadline=min(5.0, self.deadline), retries=1,
                )
            except FedcreditError as exc:
                log.info("%s: could not notify %s of abort of %s: %s", self.party, peer, job, exc)

        threads = [threading.Thread(target=notify, args=(p,), daemon=True) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10.0)


def _retry_after(exc: grpc.RpcError) -> float | None:
    """The retry-after hint of a deferred push (None: a refusal, not a deferral)."""
    try:
        md = exc.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not a call error
        return None
    for key, value in md:
        if key == _RETRY_AFTER_MD:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def _check_int(name: str, v, lo: int, hi: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise ConfigError(f"The {name!r} parameter of GrpcTransport must be an int in {rng}. Got {v!r} instead.")


class GrpcBackend(Backend):
    """:class:`Backend` of one job over a :class:`GrpcTransport` (made by :meth:`GrpcTransport.channel`)."""

    def __init__(self, transport: GrpcTransport, job_id: str):
        self.transport = transport
        self.job_id = job_id
        self.party = transport.party

    @property
    def peers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.transport.peers)

    def send_bytes(self, peer: str, tag: str, payload: bytes) -> None:
        t = self.transport
        try:
            t._push(peer, self.job_id, tag, payload)
        except PeerError as exc:
            # a peer we cannot reach will not answer either: end pending receives from it now
            t._mailbox.fail(self.job_id, peer, str(exc))
            raise

    def recv_bytes(self, peer: str, tag: str, timeout: float) -> bytes:
        t = self.transport
        return t._mailbox.take(
            self.job_id,
            peer,
            tag,
            timeout,
            me=t.party,
            idle=lambda: t._probe(peer, self.job_id),
            idle_every=t.probe_interval,
        )

    def abort(self, reason: str) -> None:
        """Notify every peer (their pending receives from us fail with ``reason``) and end our own pending receives."""
        self.transport._abort_job(self.job_id, reason)

    def close(self) -> None:
        """End this job here: drop its buffered messages; later messages for it are refused."""
        self.transport._mailbox.close_job(self.job_id)
