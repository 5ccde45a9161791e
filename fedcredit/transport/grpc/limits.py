"""Fair shares of a party's server: per-caller call limits, per-peer push rates, bounded refusal logging.

No caller can starve another: every call of every service is admitted
against a per-caller concurrency limit before its request is read
(:class:`CallLimits`), pushes are rate-limited per peer
(:class:`PeerLimits`), and refusals are logged at a bounded rate
(:func:`log_limited`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

import grpc

from .framing import raw_bytes
from .identity import peer_identity
from .options import MAX_CONTROL_REQUEST_BYTES, MAX_UNARY_REQUEST_BYTES, RETRY_AFTER_MD, SMALL_SERVICES

__all__ = ["retry_after", "Refuse", "PeerLimits", "LogThrottle", "log_limited", "CallLimits", "STRANGERS"]

log = logging.getLogger("fedcredit.transport")

#: Bucket of every caller with a federation certificate that is neither this party nor a listed peer.
STRANGERS = "(unlisted)"


class Refuse(Exception):
    """A push refused (or deferred, with ``retry_after`` seconds) with a gRPC status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after: float | None = None):
        self.code, self.details, self.retry_after = code, details, retry_after
        super().__init__(details)


class PeerLimits:
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
        """Take one push slot for ``peer`` or raise :class:`Refuse`; pair with :meth:`release`."""
        now = self._clock()
        with self._lock:
            tokens, at = self._tokens.get(peer, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._tokens[peer] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"rate limit: more than {self.rate:g} messages/s (burst {self.burst}) from {peer!r}; "
                              f"retry in {wait:.2f}s", retry_after=wait)
            active = self._active.get(peer, 0)
            if active >= self.inflight:
                self._tokens[peer] = (tokens, now)
                raise Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
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


class LogThrottle:
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


_LOG_THROTTLE = LogThrottle()


def log_limited(level: int, key: str, msg: str, *args) -> None:
    ok, suppressed = _LOG_THROTTLE.allow(key)
    if ok:
        if suppressed:
            msg += " (%d similar message(s) suppressed in the last minute)"
            args = (*args, suppressed)
        log.log(level, msg, *args)


class CallLimits(grpc.ServerInterceptor):
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

    Parameters
    ----------
    party : str
        This party's name (its own operator counts as a listed caller).
    is_peer : callable
        ``is_peer(name)``: whether ``name`` is in the current peer list.
    per_peer, strangers : int
        Concurrent calls per listed caller, and for all other callers together.
    precheck : callable, optional
        ``precheck(method, context)``: who may call at all (the authorizer).
    """

    def __init__(self, party: str, is_peer: Callable[[str], bool], per_peer: int, strangers: int, precheck=None):
        self.party, self.is_peer = party, is_peer
        self.per_peer, self.strangers = int(per_peer), int(strangers)
        #: ``precheck(method, context)``: who may call at all (the authorizer), run before a slot is taken
        #: and before the request is read, so a stranger or revoked peer cannot hold a call open
        self.precheck = precheck
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}

    def _enter(self, context, method: str) -> str:
        if self.precheck is not None:
            self.precheck(method, context)  # aborts the call
        name = peer_identity(context)
        listed = name == self.party or self.is_peer(name)
        bucket, limit = (name, self.per_peer) if listed else (STRANGERS, self.strangers)
        with self._lock:
            n = self._active.get(bucket, 0)
            if n < limit:
                self._active[bucket] = n + 1
                return bucket
        log_limited(logging.WARNING, f"calls:{self.party}:{bucket}", "%s refused a call to %s from %r: %d calls of %s in progress",
                     self.party, method, name, n, "unlisted parties" if not listed else "that party")
        context.set_trailing_metadata(((RETRY_AFTER_MD, "0.100"),))
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
        parse = h.request_deserializer or raw_bytes
        cap = MAX_CONTROL_REQUEST_BYTES if method.startswith(SMALL_SERVICES) else MAX_UNARY_REQUEST_BYTES

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


def retry_after(exc: grpc.RpcError) -> float | None:
    """The retry-after hint of a deferred push (None: a refusal, not a deferral)."""
    try:
        md = exc.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not a call error
        return None
    for key, value in md:
        if key == RETRY_AFTER_MD:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None
