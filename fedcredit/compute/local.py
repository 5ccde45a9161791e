"""The default backend: the party process's own ``spawn`` process pool (:mod:`fedcredit.crypto.pool`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..crypto import pool as _pool
from .base import ComputeBackend

__all__ = ["LocalBackend"]


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
            _pool.configure(workers)
        self._workers = workers

    @property
    def n_workers(self) -> int:
        return _pool.local_pool_size()

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        arg_list = list(arg_list)
        if not arg_list:
            return []
        if len(arg_list) == 1:
            return [fn(*arg_list[0])]
        return _pool.local_map(fn, arg_list)

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
