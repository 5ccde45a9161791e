"""The transport object: one per party process, owning its server, client channels and mailbox.

See the package docstring (:mod:`fedcredit.transport.grpc`) for the security
properties and delivery semantics.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

import grpc

from ..._proto import federation_pb2 as pb
from ..._proto import federation_pb2_grpc as pb_grpc
from ...certs import LoadedTls, TlsFiles, check_party_name, load_tls
from ...errors import ConfigError, FedcreditError, PeerError, ProtocolError
from ...ids import is_name
from ..base import DEFAULT_TIMEOUT, Channel
from .authz import Authorizer
from .framing import PING, PUSH, chunk_count, encode_chunks, message_sha256, raw_bytes
from .identity import client_channel, peer_identity
from .backend import GrpcBackend
from .limits import CallLimits, PeerLimits, retry_after
from .mailbox import Mailbox
from .options import DEFAULT_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES, MAX_CHUNK_BYTES, check_int
from .server import ServerConfig, bind, new_server
from .servicer import FederationServicer

__all__ = ["GrpcTransport"]

log = logging.getLogger("fedcredit.transport")

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


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
        counted before the request is read (see :class:`~.limits.CallLimits`);
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
        check_int("max_message_bytes", max_message_bytes, 1)
        check_int("retries", retries, 0)
        check_int("chunk_bytes", chunk_bytes, 1, MAX_CHUNK_BYTES)
        check_int("max_workers", max_workers, 2)
        check_int("peer_burst", peer_burst, 1)
        # no single caller may hold every server thread: a push, a ping or a control call of another gets through
        if peer_inflight is not None:
            check_int("peer_inflight", peer_inflight, 1, max_workers - 2)
        if peer_calls is None:
            peer_calls = max(max_workers // 4, 0 if peer_inflight is None else peer_inflight) + 8
            peer_calls = max(1, min(peer_calls, max_workers // 2))
        check_int("peer_calls", peer_calls, 1, max_workers - 2)
        check_int("stranger_calls", stranger_calls, 1, max_workers - 2)
        if peer_inflight is None:
            peer_inflight = peer_calls
        for name, v in (("deadline", deadline), ("probe_interval", probe_interval), ("liveness_grace", liveness_grace),
                        ("peer_rate", peer_rate), ("orphan_ttl", orphan_ttl)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"The {name!r} parameter of GrpcTransport must be a number > 0. Got {v!r} instead.")
        if max_buffer_bytes is None:
            max_buffer_bytes = 2 * max_message_bytes
        check_int("max_buffer_bytes", max_buffer_bytes, max_message_bytes)

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
        self._mailbox = Mailbox(max_buffer_bytes, orphan_ttl=orphan_ttl)
        self._limits = PeerLimits(peer_rate, peer_burst, peer_inflight)
        self._port: int | None = None
        self._stopped = False
        #: set by the party: why a caller is not a peer (e.g. revoked, when), and whether it has a role in a job
        self.refusal_reason: Callable[[str], str | None] | None = None
        self.job_guard: Callable[[str, str], None] | None = None
        self._authorizer = Authorizer(self)
        self._calls = CallLimits(party, self._is_peer, peer_calls, stranger_calls, precheck=self._authorizer.check)
        # outermost first: the per-caller concurrency share is taken before the request is read
        # (CallLimits), then every method of every servicer passes one authorization check (authz.py)
        self._server = new_server(ServerConfig(listen=listen, name=party, max_workers=max_workers,
                                               max_concurrent_streams=peer_calls,
                                               interceptors=(self._calls, self._authorizer)))
        pb_grpc.add_FederationServicer_to_server(FederationServicer(self), self._server)

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
            creds = None
            if self._tls is not None:
                # the certificate configuration is fetched for each new handshake, so reload_tls() swaps the
                # certificate, key and CA bundle without a restart (connections already open keep theirs)
                creds = grpc.dynamic_ssl_server_credentials(
                    self._server_cert_config(), self._fetch_cert_config, require_client_authentication=True)
            port = bind(self._server, self.listen, creds)
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
    def _is_peer(self, name: str) -> bool:
        with self._lock:
            return name in self._peers

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
            ch = client_channel(addr, target=peer, tls=self._tls, me=self.party)
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
            chunk_count=chunk_count(len(payload), self.chunk_bytes),
            kind=kind,
            reason=reason,
        ).SerializeToString()
        deadline = self.deadline if deadline is None else deadline
        retries = self.retries if retries is None else retries
        delay = 0.2
        attempt = 0
        while True:
            call = self.grpc_channel(peer).stream_unary(
                PUSH, request_serializer=raw_bytes, response_deserializer=pb.PushAck.FromString
            )
            try:
                ack = call(encode_chunks(header, payload, self.chunk_bytes), timeout=deadline)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = exc.details() if hasattr(exc, "details") else str(exc)
                after = retry_after(exc) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
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
                PING, request_serializer=pb.PingRequest.SerializeToString, response_deserializer=pb.PingReply.FromString
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
