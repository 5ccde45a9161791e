"""The compute-backend interface: where one party's heavy, data-parallel work runs.

A backend runs module-level functions on worker processes (``map``) and keeps
data partitions on its workers (``scatter``) so that later tasks can refer to
them (``map_partitions``) without shipping them again. Two implementations:

* :class:`~fedcredit.compute.local.LocalBackend` -- the party's own process
  pool (default, no extra dependency); "partitions" stay in the party process
  and are sent with every task, as before;
* :class:`~fedcredit.compute.dask.DaskBackend` -- a Dask ``distributed``
  cluster of the party's own (``pip install 'fedcredit[dask]'``); partitions
  stay on the workers that hold them.

Protocols never see a backend: the crypto layer runs its work on
:func:`fedcredit._executor.current`, which this package sets to
:func:`fedcredit.compute.current`; its per-row ciphertexts stay partitioned
(:mod:`fedcredit.crypto.partitioned`) when ``current().distributed`` is true.
A backend implements the crypto layer's :class:`fedcredit._executor.Executor`.
:class:`PartitionLost` is defined there (re-exported here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from .._executor import PartitionLost

__all__ = ["ComputeBackend", "PartitionLost"]


class ComputeBackend(ABC):
    """Runs one party's heavy work: vector crypto, histogram partial sums, PSI/LR exponentiations.

    Attributes
    ----------
    name : str
        ``"local"`` or ``"dask"`` (as in ``[compute].backend``).
    distributed : bool
        True when scattered partitions live outside this process (callers then keep
        per-row data on the workers instead of in the party process).
    """

    name = "abstract"
    distributed = False
    #: Rows per partition when per-row data is scattered (``[compute].partition_rows``).
    partition_rows = 100_000

    @property
    @abstractmethod
    def n_workers(self) -> int:
        """Tasks that can run at once (worker processes x threads)."""

    @abstractmethod
    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        """``[fn(*args) for args in arg_list]``, run on the workers; results in order.

        ``fn`` must be a module-level function. Private key material in ``args`` must be
        :class:`~fedcredit.crypto.pool.KeyBytes` (its ``repr`` is redacted).

        Raises
        ------
        ComputeError
            The backend is unreachable, or a task kept failing after the retries.
        Exception
            Whatever ``fn`` raised, unchanged (e.g. ``DecryptionError``).
        """

    @abstractmethod
    def scatter(self, partitions: Sequence[Any]) -> list:
        """Place each partition on a worker; returns one opaque handle per partition."""

    @abstractmethod
    def map_to_partitions(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        """Like :meth:`map`, but each result stays on its worker as a partition; returns handles.

        Waits until every task is done (so failures surface here, as in :meth:`map`).
        """

    @abstractmethod
    def map_partitions(self, fn: Callable, handles: Sequence, *args, part_args: Sequence[tuple] | None = None) -> list:
        """``[fn(partition_i, *args, *part_args[i]) for each handle]``; results in order.

        Partition ``i``'s task runs where the partition is (no data moves but the
        arguments and the result).

        Raises
        ------
        PartitionLost
            Some partitions were lost with a worker; scatter them again and retry.
        ComputeError, Exception
            As :meth:`map`.
        """

    @abstractmethod
    def free(self, handles: Sequence) -> None:
        """Release scattered partitions (safe to call twice)."""

    def replace(self, handles: list, indices: Sequence[int], partitions: Sequence[Any]) -> None:
        """Scatter ``partitions`` again in place of the (lost) ``handles[indices]``."""
        new = self.scatter(list(partitions))
        self.free([handles[i] for i in indices])
        for i, h in zip(indices, new):
            handles[i] = h

    def submit_idle(self, fn: Callable, *args):
        """Background work at the lowest CPU priority: its future, or ``None`` (default: not supported).

        Only for work computed ahead of use that the caller can also compute when needed.
        """
        return None

    def close(self) -> None:
        """Release workers or connections this backend created (safe to call twice)."""

    def describe(self) -> dict:
        """JSON-able summary for logs and reports (never key material)."""
        return {"backend": self.name}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
