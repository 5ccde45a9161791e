"""Compute backends: where one party's heavy, data-parallel work runs (see ``docs/compute.md``).

A party picks its backend in its config::

    [compute]
    backend = "dask"                     # default "local": this process's pool
    scheduler = "tls://10.0.0.5:8786"    # the party's own Dask scheduler
    tls_ca = "cluster-ca.pem"
    tls_cert = "party-client.pem"
    tls_key = "party-client.key"

and the party process installs it at start-up with :func:`set_default`. Code
that needs the backend asks :func:`current`; a thread can run with another
backend inside ``with using(backend):`` (tests run two parties with different
backends in one process). Protocols never name a backend: the crypto layer
(:mod:`fedcredit.crypto.parallel`, :mod:`fedcredit.crypto.partitioned`) runs on
the current one, which this package installs as crypto's executor
(:mod:`fedcredit._executor`: crypto sits below compute and never imports it).
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager

from .. import _executor
from .base import ComputeBackend, PartitionLost
from .local import LocalBackend

__all__ = ["ComputeBackend", "PartitionLost", "LocalBackend", "DaskBackend", "current", "set_default", "using",
           "from_config"]

_default: ComputeBackend | None = None
_default_lock = threading.Lock()
_override: contextvars.ContextVar[ComputeBackend | None] = contextvars.ContextVar("fedcredit_compute", default=None)


def __getattr__(name):
    if name == "DaskBackend":  # lazy: importing it must not need dask
        from .dask import DaskBackend

        return DaskBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def current() -> ComputeBackend:
    """The backend of this thread (``using``), else the process default (a :class:`LocalBackend`)."""
    b = _override.get()
    if b is not None:
        return b
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LocalBackend()
    return _default


def set_default(backend: ComputeBackend | None) -> ComputeBackend | None:
    """Install the process-wide backend (the party does this from ``[compute]``); returns the previous one.

    ``None`` restores the default local pool.
    """
    global _default
    if backend is not None and not isinstance(backend, ComputeBackend):
        raise TypeError(f"expected a ComputeBackend, got {type(backend).__name__}")
    with _default_lock:
        prev, _default = _default, backend
    return prev


_executor.install(current)  # crypto's work runs on this package's current backend


@contextmanager
def using(backend: ComputeBackend):
    """Run the ``with`` block (in this thread) on ``backend``."""
    if not isinstance(backend, ComputeBackend):
        raise TypeError(f"expected a ComputeBackend, got {type(backend).__name__}")
    token = _override.set(backend)
    try:
        yield backend
    finally:
        _override.reset(token)


def from_config(cfg) -> ComputeBackend:
    """The backend a :class:`~fedcredit.config.ComputeConfig` describes (nothing connects until first use)."""
    if cfg.backend == "local":
        return LocalBackend(workers=cfg.workers)
    if cfg.backend == "dask":
        from .dask import DaskBackend

        return DaskBackend(cfg.scheduler, workers=cfg.workers or 2, tls_ca=cfg.tls_ca, tls_cert=cfg.tls_cert,
                           tls_key=cfg.tls_key, retries=cfg.retries, timeout=cfg.connect_timeout,
                           task_timeout=cfg.task_timeout, partition_rows=cfg.partition_rows)
    raise ValueError(f"unknown compute backend {cfg.backend!r}")
