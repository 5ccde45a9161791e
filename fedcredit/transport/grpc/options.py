"""Size limits and gRPC options: the one place that sets gRPC message-size limits.

Every fedcredit endpoint (a party's server, its client channels to peers, an
operator's CLI channel) takes its options from here: :func:`grpc_options` for
both sides, :func:`server_options` on top for a server, :data:`CLIENT_OPTIONS`
on top for a client.
"""

from __future__ import annotations

from ...errors import ConfigError

__all__ = [
    "MAX_CHUNK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_UNARY_REQUEST_BYTES",
    "MAX_CONTROL_REQUEST_BYTES",
    "SMALL_SERVICES",
    "RETRY_AFTER_MD",
    "CLIENT_OPTIONS",
    "grpc_options",
    "server_options",
    "check_int",
]

#: Largest payload slice in one Chunk. gRPC's own frame limit (see :func:`grpc_options`) is this plus headroom.
MAX_CHUNK_BYTES = 4 * 2**20
#: Chunk size used when sending.
DEFAULT_CHUNK_BYTES = 256 * 2**10  # measured: pipelines better than 1-4 MiB on loopback
#: Largest reassembled message a party accepts by default.
DEFAULT_MAX_MESSAGE_BYTES = 512 * 2**20
_FRAME_HEADROOM = 64 * 1024
#: Largest request (bytes) of a unary call on any service but Federation.Push (chunked): gRPC's frame limit.
MAX_UNARY_REQUEST_BYTES = MAX_CHUNK_BYTES + _FRAME_HEADROOM
#: Requests of the Control and Health services are small (a job spec, an event, a health check).
MAX_CONTROL_REQUEST_BYTES = 1 * 2**20
#: Method prefixes whose requests are bounded by :data:`MAX_CONTROL_REQUEST_BYTES`.
SMALL_SERVICES = ("/fedcredit.v1.Control/", "/grpc.health.v1.Health/", "/fedcredit.v1.Health/")
#: Trailing metadata key on a refusal the sender may retry later (a rate limit, not a fault).
RETRY_AFTER_MD = "fedcredit-retry-after"


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


#: Options of every client channel (on top of :func:`grpc_options`). A list, read at each dial: the benchmark
#: harness replaces its items in place to measure other connect timeouts (benchmarks/harness.py).
CLIENT_OPTIONS = [
    # no grpc.min_reconnect_backoff_ms: gRPC uses it as the connect + TLS handshake deadline, and a 200 ms value
    # failed every first connection over a 50 ms/direction link (benchmarks/README.md, "Wide-area link profiles")
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 0),  # we retry ourselves, keeping the message id
]


def check_int(name: str, v, lo: int, hi: int | None = None) -> None:
    """ConfigError unless ``v`` is an int (not a bool) in ``[lo, hi]`` (a parameter of GrpcTransport)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise ConfigError(f"The {name!r} parameter of GrpcTransport must be an int in {rng}. Got {v!r} instead.")
