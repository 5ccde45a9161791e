"""A party's gRPC server: built with fedcredit's options and interceptors, bound to one port.

Follows the grpc examples' lifecycle (``errors/server.py``):
``create_server(cfg) -> (server, port)``, servicers added, ``server.start()``,
and ``server.stop(grace)`` in ``finally``. Tests bind port 0 and use the port
they get back. :class:`~fedcredit.transport.grpc.GrpcTransport` builds its
server with :func:`new_server` when it is created (so a party can add its
servicers) and binds it with :func:`bind` only in ``start()``.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import grpc

from ...errors import ConfigError
from .options import grpc_options, server_options

__all__ = ["ServerConfig", "create_server", "new_server", "bind"]


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How a party's gRPC server is built.

    Parameters
    ----------
    listen : str
        ``"host:port"`` to bind (port 0 picks a free port).
    name : str
        The party's name (names the server threads).
    max_workers : int, default=64
        Server threads; at most ``4 * max_workers`` calls are admitted at once,
        beyond that gRPC answers RESOURCE_EXHAUSTED without using a thread.
    max_concurrent_streams : int, default=16
        Calls per connection (:func:`~.options.server_options`).
    interceptors : tuple
        Server interceptors, outermost first.
    credentials : grpc.ServerCredentials or None
        mTLS credentials; None binds a plaintext port (tests only).
    """

    listen: str
    name: str
    max_workers: int = 64
    max_concurrent_streams: int = 16
    interceptors: tuple = ()
    credentials: grpc.ServerCredentials | None = None


def new_server(cfg: ServerConfig) -> grpc.Server:
    """An unbound server with fedcredit's options and ``cfg``'s interceptors."""
    return grpc.server(
        ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix=f"fedcredit-{cfg.name}"),
        options=grpc_options() + server_options(cfg.max_concurrent_streams),
        interceptors=tuple(cfg.interceptors),
        maximum_concurrent_rpcs=4 * cfg.max_workers,
    )


def bind(server: grpc.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind ``listen`` (mTLS with ``credentials``, plaintext without); the bound port.

    Raises
    ------
    ConfigError
        The address cannot be bound (in use: ports are bound without
        ``SO_REUSEPORT``, or invalid).
    """
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {listen!r}: {exc}") from None
    if not port:
        raise ConfigError(f"cannot listen on {listen!r} (address in use or invalid)")
    return port


def create_server(cfg: ServerConfig) -> tuple[grpc.Server, int]:
    """A server built and bound per ``cfg``, not started: ``(server, port)``.

    Add servicers, then ``server.start()``; stop it with ``server.stop(grace)``.
    """
    server = new_server(cfg)
    return server, bind(server, cfg.listen, cfg.credentials)
