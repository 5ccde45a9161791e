"""The seam between the crypto layer and the compute backend: where crypto's data-parallel work runs.

``crypto`` sits below ``compute`` (DESIGN §3) and must not import it, not even lazily.
Crypto code asks :func:`current` for an :class:`Executor`; :mod:`fedcredit.compute`
installs its own :func:`fedcredit.compute.current` here when it is imported (``import
fedcredit`` does), so vector crypto runs on the party's configured backend (its process
pool, or its Dask cluster) while no crypto module names a backend. Without an installed
source (a process that never imported :mod:`fedcredit.compute`) the work runs inline, in
the calling thread, on one "worker": same results, no parallelism.

This module imports nothing from fedcredit and nothing heavy (``import fedcredit`` stays fast).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["Executor", "PartitionLost", "install", "current"]


class PartitionLost(Exception):
    """A scattered partition is gone (its worker died); the owner may scatter it again.

    Internal signal between a backend and :mod:`fedcredit.crypto.partitioned`;
    it never leaves the party (what does is a :class:`~fedcredit.errors.ComputeError`).

    Attributes
    ----------
    indices : list of int
        Positions (in the ``handles`` passed to ``map_partitions``) of the lost partitions.
    """

    def __init__(self, indices: Sequence[int], reason: str = ""):
        self.indices = sorted(set(int(i) for i in indices))
        super().__init__(f"lost partition(s) {self.indices}" + (f": {reason}" if reason else ""))


class Executor(Protocol):
    """What crypto needs of a compute backend (:class:`fedcredit.compute.ComputeBackend` implements it).

    Attributes
    ----------
    name : str
    distributed : bool
        True when scattered partitions live outside this process.
    partition_rows : int
        Rows per partition when per-row data is scattered.
    """

    name: str
    distributed: bool
    partition_rows: int

    @property
    def n_workers(self) -> int: ...

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list: ...

    def scatter(self, partitions: Sequence[Any]) -> list: ...

    def map_to_partitions(self, fn: Callable, arg_list: Sequence[tuple]) -> list: ...

    def map_partitions(self, fn: Callable, handles: Sequence, *args,
                       part_args: Sequence[tuple] | None = None) -> list: ...

    def free(self, handles: Sequence) -> None: ...

    def replace(self, handles: list, indices: Sequence[int], partitions: Sequence[Any]) -> None: ...

    def submit_idle(self, fn: Callable, *args):
        """Background work at the lowest CPU priority; a future, or ``None`` if the executor has no idle pool."""


class _Inline:
    """The executor of a process without :mod:`fedcredit.compute`: everything in the calling thread."""

    name = "inline"
    distributed = False
    partition_rows = 100_000
    n_workers = 1

    def map(self, fn, arg_list):
        return [fn(*a) for a in arg_list]

    def scatter(self, partitions):
        return [[p] for p in partitions]

    def map_to_partitions(self, fn, arg_list):
        return [[r] for r in self.map(fn, arg_list)]

    def map_partitions(self, fn, handles, *args, part_args=None):
        extra = list(part_args) if part_args is not None else [()] * len(handles)
        return [fn(h[0], *args, *e) for h, e in zip(handles, extra)]

    def free(self, handles):
        for h in handles:
            h[:] = [None]

    def replace(self, handles, indices, partitions):
        for i, p in zip(indices, partitions):
            handles[i] = [p]

    def submit_idle(self, fn, *args):
        return None


_INLINE = _Inline()
_source: Callable[[], Executor] | None = None
_lock = threading.Lock()


def install(source: Callable[[], Executor] | None) -> None:
    """Make ``source()`` the executor crypto uses (``None``: inline). Called by :mod:`fedcredit.compute`."""
    global _source
    with _lock:
        _source = source


def current() -> Executor:
    """The executor of this thread: the compute backend's ``current()``, or the inline one."""
    src = _source
    return _INLINE if src is None else src()
