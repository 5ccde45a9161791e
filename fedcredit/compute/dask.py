"""A party's heavy work on a Dask ``distributed`` cluster of its own (``pip install 'fedcredit[dask]'``).

Why Dask rather than Ray: the work is a handful of coarse, stateless tasks over
byte buffers plus partitions that must stay where they are, which is exactly
``Client.submit`` / ``Client.scatter``; Dask is pure Python, installs from
PyPI in seconds (no compiled object store or raylet), and its scheduler speaks
mutual TLS with plain PEM files (``tls://`` addresses and a
``distributed.security.Security``), the same kind of files as the party's own
mTLS. ``distributed`` is imported only when the backend is first used.

Security. Tasks that the key owner runs carry ``p`` and ``q`` as task
arguments (:class:`~fedcredit.crypto.pool.KeyBytes`, whose ``repr`` is
redacted because a worker logs the ``repr`` of a failed task); they travel
only between this party process, its scheduler and its workers. The cluster
must therefore belong to the party and sit inside its trust boundary: use a
``tls://`` scheduler with the cluster's own CA (``[compute].tls_*``); a plain
``tcp://`` scheduler is refused unless it is on loopback or
``[compute].insecure = true``.  The local cluster (no scheduler configured)
uses ``tls://`` on 127.0.0.1 with Dask's temporary security
(``distributed.security.Security.temporary()``: a fresh self-signed CA and one
certificate, in memory, handed to the workers it starts), so other users and
processes on the machine can neither submit tasks nor read results. Task keys are random (``fedcredit-<fn>-<uuid>``)
rather than Dask's default hash of the arguments.

Faults. A worker that dies mid-task has its task re-run elsewhere by the
scheduler (up to ``distributed.scheduler.allowed-failures`` times, 3 by
default); a task that raises is retried ``retries`` times. What still fails
raises :class:`~fedcredit.errors.ComputeError` with the reason, so the step
fails cleanly and the party keeps serving. Scattered partitions are not
recomputable by Dask: when their worker dies, :meth:`DaskBackend.map_partitions`
raises :class:`~fedcredit.compute.base.PartitionLost` and the owner (see
:mod:`fedcredit.crypto.partitioned`) scatters them again from its source.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ComputeError
from .base import ComputeBackend, PartitionLost

__all__ = ["DaskBackend", "INSTALL_HINT"]

INSTALL_HINT = "the Dask backend needs the dask extra: pip install 'fedcredit[dask]'"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ComputeError(INSTALL_HINT) from None
    return distributed


class DaskBackend(ComputeBackend):
    """Run tasks on a Dask cluster.

    Parameters
    ----------
    scheduler : str, optional
        ``tcp://host:port`` or ``tls://host:port`` of the party's own scheduler.
        Without one, a ``LocalCluster`` of ``workers`` processes is started on
        loopback (a single machine; mostly for tests and trials), speaking mutual
        TLS with a temporary in-memory CA (``Security.temporary()``): only this
        process and the cluster's own workers hold the certificate.
    workers : int, default=2
        Worker processes of that local cluster (one thread each).
    tls_ca, tls_cert, tls_key : path, optional
        PEM files for a ``tls://`` scheduler (the cluster's CA, this client's
        certificate and key).
    retries : int, default=1
        Extra attempts for a task that raised.
    timeout : float, default=30
        Seconds to connect to the scheduler.
    task_timeout : float, default=3600
        Seconds one ``map``/``map_partitions`` call may take before it fails.
    partition_rows : int, default=100000
        Rows per partition when per-row data is scattered.
    client : distributed.Client, optional
        An existing client (tests); the backend does not close it.
    """

    name = "dask"
    distributed = True

    def __init__(self, scheduler: str | None = None, *, workers: int = 2, tls_ca=None, tls_cert=None, tls_key=None,
                 retries: int = 1, timeout: float = 30.0, task_timeout: float = 3600.0, partition_rows: int = 100_000,
                 client=None):
        self.scheduler = scheduler
        self.workers = int(workers)
        self.tls = (tls_ca, tls_cert, tls_key) if tls_ca or tls_cert or tls_key else None
        self.retries = int(retries)
        self.timeout = float(timeout)
        self.task_timeout = float(task_timeout)
        self.partition_rows = int(partition_rows)
        self._client = client
        self._own_client = client is None
        self._cluster = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection
    def _security(self):
        if self.tls is None:
            return None
        from distributed.security import Security

        ca, cert, key = (str(Path(p)) if p is not None else None for p in self.tls)
        return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)

    @property
    def client(self):
        """The ``distributed.Client`` (connects, or starts the local cluster, on first use)."""
        with self._lock:
            if self._client is None:
                dd = _distributed()
                try:
                    if self.scheduler:
                        self._client = dd.Client(self.scheduler, security=self._security(), timeout=self.timeout,
                                                 set_as_default=False)
                    else:
                        # p, q and PSI scalars cross these sockets: mutual TLS even on loopback, with a
                        # throw-away CA and certificate made in memory for this cluster (another local
                        # user could otherwise connect to the scheduler and submit tasks or read results)
                        sec = dd.security.Security.temporary()
                        self._cluster = dd.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                        host="127.0.0.1", protocol="tls://", security=sec,
                                                        dashboard_address=None, silence_logs=40)
                        self._client = dd.Client(self._cluster, security=sec, set_as_default=False,
                                                 timeout=self.timeout)
                except ComputeError:
                    raise
                except Exception as exc:  # OSError, TimeoutError, ssl errors...
                    self._close_cluster()
                    where = self.scheduler or "a local cluster"
                    raise ComputeError(f"cannot reach the Dask scheduler at {where}: {type(exc).__name__}: {exc}") from None
            return self._client

    @property
    def n_workers(self) -> int:
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed: no n_workers argument
            info = self.client.scheduler_info()
        except ComputeError:
            raise
        except Exception as exc:
            raise ComputeError(f"the Dask scheduler did not answer: {type(exc).__name__}: {exc}") from None
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            try:
                self._cluster.close()
            finally:
                self._cluster = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._own_client:
                try:
                    self._client.close()
                except Exception:  # pragma: no cover - best effort at shutdown
                    pass
                self._client = None
            self._close_cluster()

    def describe(self) -> dict:
        return {"backend": self.name, "scheduler": self.scheduler or "local cluster (loopback)",
                "tls": self.tls is not None or not self.scheduler, "retries": self.retries}

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def _key(fn) -> str:
        return f"fedcredit-{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"

    def _gather(self, futures: list, what: str, *, handles: Sequence | None = None) -> list:
        dd = _distributed()
        try:
            with self.client.as_current():
                _, not_done = dd.wait(futures, timeout=self.task_timeout, return_when="ALL_COMPLETED")
        except TimeoutError:
            not_done = futures
        if not_done:
            self.client.cancel(list(futures))
            raise ComputeError(f"{what}: tasks did not finish within {self.task_timeout:g} s "
                               "(are the cluster's workers running?)")
        lost = []
        for i, f in enumerate(futures):
            if f.status == "cancelled" and handles is not None:
                lost.append(i)
        if lost:
            raise PartitionLost(lost, "their worker left the cluster")
        out = []
        for f in futures:
            if f.status == "error":
                exc = f.exception()
                if type(exc).__name__ == "KilledWorker":
                    raise ComputeError(f"{what}: a compute worker died running it every time it was tried ({exc})") \
                        from None
                raise exc
            if f.status == "cancelled":
                raise ComputeError(f"{what}: the cluster cancelled the task (lost worker or scheduler restart)")
            try:
                out.append(f.result())
            except Exception as exc:  # pragma: no cover - race with a dying worker
                raise ComputeError(f"{what}: {type(exc).__name__}: {exc}") from None
        return out

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        arg_list = list(arg_list)
        if not arg_list:
            return []
        c = self.client
        futures = [c.submit(fn, *args, key=self._key(fn), pure=False, retries=self.retries) for args in arg_list]
        return self._gather(futures, getattr(fn, "__name__", "task"))

    def scatter(self, partitions: Sequence[Any]) -> list:
        parts = list(partitions)
        if not parts:
            return []
        try:
            return list(self.client.scatter(parts, hash=False))
        except ComputeError:
            raise
        except Exception as exc:
            raise ComputeError(f"cannot place data on the Dask workers: {type(exc).__name__}: {exc}") from None

    def map_to_partitions(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        arg_list = list(arg_list)
        if not arg_list:
            return []
        c = self.client
        futures = [c.submit(fn, *args, key=self._key(fn), pure=False, retries=self.retries) for args in arg_list]
        dd = _distributed()
        try:
            with c.as_current():
                _, not_done = dd.wait(futures, timeout=self.task_timeout)
        except TimeoutError:
            not_done = futures
        if not_done:
            c.cancel(futures)
            raise ComputeError(f"{getattr(fn, '__name__', 'task')}: tasks did not finish within "
                               f"{self.task_timeout:g} s (are the cluster's workers running?)")
        bad = [f for f in futures if f.status != "finished"]
        if bad:
            try:
                self._gather(bad, getattr(fn, "__name__", "task"))  # raises the reason
            finally:
                c.cancel(futures)
        return futures  # lineage: if a worker dies, Dask recomputes the partition from its task

    def map_partitions(self, fn: Callable, handles: Sequence, *args, part_args: Sequence[tuple] | None = None) -> list:
        handles = list(handles)
        if not handles:
            return []
        extra = list(part_args) if part_args is not None else [()] * len(handles)
        lost = [i for i, h in enumerate(handles) if h.status in ("cancelled", "lost", "error")]
        if lost:
            raise PartitionLost(lost, "their worker left the cluster")
        c = self.client
        futures = [c.submit(fn, h, *args, *e, key=self._key(fn), pure=False, retries=self.retries)
                   for h, e in zip(handles, extra)]
        try:
            return self._gather(futures, getattr(fn, "__name__", "task"), handles=handles)
        except PartitionLost as exc:
            # which handles are gone (a task may be cancelled because another one's input was lost)
            gone = [i for i, h in enumerate(handles) if h.status != "finished"]
            raise PartitionLost(gone or exc.indices, "their worker left the cluster") from None

    def free(self, handles: Sequence) -> None:
        hs = [h for h in handles if h is not None]
        if hs and self._client is not None:
            try:
                self._client.cancel(hs)
            except Exception:  # pragma: no cover - best effort
                pass
