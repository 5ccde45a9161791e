"""The default backend: the party process's own ``spawn`` process pool, and that pool's lifecycle.

The pool is created lazily on first use, once, with :func:`n_workers` processes
(``[compute].workers`` via :func:`configure`, else ``FEDCREDIT_CRYPTO_WORKERS``
or the cores this process may run on), uses the ``spawn`` start method (safe
next to gRPC threads) and is shut down at exit. A second, one-process pool at the
lowest CPU priority runs background work (:func:`submit_idle`). The functions
the pools run are the crypto workers of :mod:`fedcredit.crypto.pool`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from .base import ComputeBackend

__all__ = ["LocalBackend", "configure", "n_workers", "get_pool", "local_pool_size", "local_map", "submit_idle",
           "shutdown"]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_idle_pool: ProcessPoolExecutor | None = None
_configured: int | None = None


def configure(workers: int | None) -> None:
    """Size of the pool when it is created (``[compute].workers``); ``None``: the default."""
    global _configured
    with _lock:
        _configured = None if workers is None else max(1, int(workers))


def n_workers() -> int:
    """Number of worker processes: :func:`configure`, ``FEDCREDIT_CRYPTO_WORKERS`` or the usable cores."""
    if _configured is not None:
        return _configured
    env = os.environ.get("FEDCREDIT_CRYPTO_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def get_pool() -> ProcessPoolExecutor:
    """The party's process pool (created on first call)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None:
            _pool_size = n_workers()
            _pool = ProcessPoolExecutor(max_workers=_pool_size, mp_context=get_context("spawn"))
        return _pool


def local_pool_size() -> int:
    """Workers in this process's pool (``n_workers()`` if the pool is not created yet)."""
    return _pool_size or n_workers()


def shutdown() -> None:
    """Stop the pools (registered with :mod:`atexit`; safe to call twice)."""
    global _pool, _pool_size, _idle_pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
            _pool_size = 0
        if _idle_pool is not None:
            _idle_pool.shutdown(wait=True, cancel_futures=True)
            _idle_pool = None


atexit.register(shutdown)


def _lowest_priority() -> None:
    """Initializer of the idle pool's worker: the lowest CPU priority (it runs when the cores are otherwise idle)."""
    try:
        os.nice(19)
    except OSError:  # pragma: no cover - not permitted: still correct, only not as polite
        pass
    try:  # Linux: the idle scheduling class, below even nice 19 (runs only on otherwise idle cores)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        pass


def submit_idle(fn, *args):
    """Submit background work to a one-process pool at the lowest CPU priority (nice 19); returns its future.

    For work computed ahead of use (uniform obfuscators for the next round's re-randomization): it
    takes only CPU time nothing else wants, so it never slows the party's own or a co-located
    party's foreground work; what is not ready when needed is computed then
    (``PublicKey._take_uniform`` in :mod:`fedcredit.crypto.paillier`).
    """
    global _idle_pool
    with _lock:
        if _idle_pool is None:
            _idle_pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                             initializer=_lowest_priority)
        pool = _idle_pool
    with _lock, _without_main():
        return pool.submit(fn, *args)


def local_map(fn, arg_list: list[tuple]) -> list:
    """Run ``fn(*args)`` for each tuple in this process's pool; results in order."""
    pool = get_pool()
    with _lock, _without_main():
        # spawn starts workers on demand at submit; hiding __main__ meanwhile keeps
        # workers from re-running the caller's script (no ``if __name__ == "__main__"`` needed)
        futures = [pool.submit(fn, *args) for args in arg_list]
    return [f.result() for f in futures]


class _without_main:
    """Temporarily replace ``sys.modules['__main__']`` by an empty module."""

    def __enter__(self):
        self._saved = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            sys.modules["__main__"] = self._saved
        return False


class LocalBackend(ComputeBackend):
    """The process pool of this party process (no extra dependency).

    Parameters
    ----------
    workers : int, optional
        Pool size (``[compute].workers``); default: ``FEDCREDIT_CRYPTO_WORKERS`` or
        the usable cores. The pool is one per process and created on first use, so
        the size applies only if no task has run in this process yet.

    Notes
    -----
    ``scatter`` keeps the partitions in this process; ``map_partitions`` sends a
    partition with each task (what the Paillier vector code always did). Use a
    distributed backend when per-row data should not live in the party process.
    """

    name = "local"
    distributed = False

    def __init__(self, workers: int | None = None):
        if workers is not None:
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ValueError(f"The 'workers' parameter of LocalBackend must be an int >= 1. Got {workers!r} instead.")
            configure(workers)
        self._workers = workers

    @property
    def n_workers(self) -> int:
        return local_pool_size()

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        arg_list = list(arg_list)
        if not arg_list:
            return []
        if len(arg_list) == 1:
            return [fn(*arg_list[0])]
        return local_map(fn, arg_list)

    def submit_idle(self, fn: Callable, *args):
        return submit_idle(fn, *args)

    def scatter(self, partitions: Sequence[Any]) -> list:
        return [_Held(p) for p in partitions]

    def map_to_partitions(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        return [_Held(r) for r in self.map(fn, arg_list)]

    def map_partitions(self, fn: Callable, handles: Sequence, *args, part_args: Sequence[tuple] | None = None) -> list:
        extra = list(part_args) if part_args is not None else [()] * len(handles)
        return self.map(fn, [(h.value, *args, *e) for h, e in zip(handles, extra)])

    def free(self, handles: Sequence) -> None:
        for h in handles:
            h.value = None

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.n_workers}


class _Held:
    """A partition kept in this process."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value
