"""How vector crypto splits its work over the party's executor (its process pool or Dask cluster).

The crypto layer never names a compute backend: it asks :func:`fedcredit._executor.current`,
which is the party's current backend (:func:`fedcredit.compute.current`) once
:mod:`fedcredit.compute` is imported. The functions it runs there are the module-level
workers of :mod:`fedcredit.crypto.pool`.
"""

from __future__ import annotations

import numpy as np

from .._executor import current

__all__ = ["PARALLEL_MIN", "use_parallel", "split", "pool_size", "parallel_map", "submit_idle"]

#: Vectors shorter than this are processed in the calling process.
PARALLEL_MIN = 512


def pool_size() -> int:
    """Workers of the current executor (for the local pool: its size, also before it exists)."""
    return current().n_workers


def use_parallel(count: int, parallel: bool | None, key_bits: int = 2048, *, weight: int = 1) -> bool:
    """Whether a batch of ``count`` items should go to the pool.

    ``parallel=True``/``False`` forces the choice; ``None`` uses the pool for
    ``PARALLEL_MIN`` items or more with production-size keys (small test keys
    are cheap enough that starting worker processes would only slow tests down).
    ``weight`` is the cost of one item relative to a fixed-base obfuscation (a full
    exponentiation is ~60), so expensive items go to the pool in smaller batches.
    """
    if parallel is False or count < 1:
        return False
    if pool_size() < 2:
        return False
    if parallel is True:
        return True
    return count * weight >= PARALLEL_MIN and key_bits >= 2048


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ``(lo, hi)`` ranges covering ``range(count)`` in ``parts`` pieces."""
    parts = max(1, min(parts, count))
    edges = np.linspace(0, count, parts + 1).astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(parts) if edges[i + 1] > edges[i]]


def parallel_map(fn, arg_list: list[tuple]) -> list:
    """Run ``fn(*args)`` for each tuple on the current executor; results in order.

    ``fn`` must be a module-level function (it is pickled by reference).

    Raises
    ------
    ComputeError
        When a distributed backend is unreachable or its workers keep failing.
    """
    return current().map(fn, arg_list)


def submit_idle(fn, *args):
    """Background work at the lowest CPU priority on the executor's idle pool: its future, or ``None``.

    ``None`` when the executor has no such pool (a distributed backend, or no compute backend
    installed); the caller then computes what it needs when it needs it.
    """
    return current().submit_idle(fn, *args)
