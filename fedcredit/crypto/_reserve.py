"""Secret values computed ahead of use in the executor's idle pool, each handed out once (hazmat).

A key owner's encryption randomness does not depend on the data, so it can be computed while the
party waits for its peers: in the one-process idle pool at the lowest CPU priority
(:func:`fedcredit.crypto.parallel.submit_idle`), which takes only CPU time nothing else wants. What
is not ready when needed is computed then, so a reserve never changes a result's distribution, only
when the work is done.

Rules: a value leaves the reserve exactly once (:meth:`IdleReserve.take` removes it under a lock); a
forked child drops everything its parent reserved; the values stay in this process and its own idle
worker; nothing is logged.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable

from gmpy2 import mpz

from . import parallel as _par

__all__ = ["IdleReserve"]


class IdleReserve:
    """A reserve of fixed-width values produced in background chunks.

    Parameters
    ----------
    task : callable
        ``task(count) -> (fn, args)``: a module-level worker function and its arguments that return
        ``count`` values as concatenated ``width``-byte big-endian integers.
    width : int
    cap : int
        Most values held or in flight at once.
    chunk : int
        Values per background task (a task's values become usable when it finishes).
    """

    def __init__(self, task: Callable[[int], tuple], width: int, *, cap: int, chunk: int = 2048):
        self._task = task
        self._width = int(width)
        self._cap = int(cap)
        self._chunk = int(chunk)
        self._lock = threading.Lock()
        self._ready: deque = deque()
        self._pending: list = []  # futures of (count, future)
        self._recent: list[int] = []
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a child never reuses its parent's secret values
            self._ready, self._pending, self._recent, self._pid = deque(), [], [], os.getpid()

    def _collect(self) -> None:
        """Move finished tasks' values into the ready queue (under the lock)."""
        still = []
        w, fb = self._width, mpz.from_bytes
        for count, fut in self._pending:
            if not fut.done():
                still.append((count, fut))
                continue
            try:
                data = fut.result()
            except Exception:  # a failed background task: those values are computed when needed
                continue
            if len(data) == count * w:
                self._ready.extend(fb(data[i:i + w], "big") for i in range(0, len(data), w))
        self._pending = still

    def take(self, count: int) -> list:
        """Up to ``count`` values, removed from the reserve (never handed out twice)."""
        with self._lock:
            self._check_fork()
            self._collect()
            k = min(int(count), len(self._ready))
            return [self._ready.popleft() for _ in range(k)]

    def available(self) -> int:
        """Values ready now."""
        with self._lock:
            self._check_fork()
            self._collect()
            return len(self._ready)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the tasks in flight now (tests; a party never waits for its reserve)."""
        with self._lock:
            futures = [f for _, f in self._pending]
        for f in futures:
            try:
                f.result(timeout=timeout)
            except Exception:  # a failed task only means fresh values later
                pass

    def refill(self, count: int) -> None:
        """After using ``count`` values, queue background tasks for the next ones: up to the sum of the
        last three counts (at most ``cap``), less what is ready or in flight."""
        with self._lock:
            self._check_fork()
            self._recent = (self._recent + [int(count)])[-3:]
            in_flight = sum(c for c, _ in self._pending)
            want = min(self._cap, sum(self._recent)) - len(self._ready) - in_flight
            while want > 0:
                k = min(self._chunk, want)
                fn, args = self._task(k)
                try:  # None: the executor has no idle pool (a distributed backend)
                    fut = _par.submit_idle(fn, *args)
                except Exception:  # a broken or shut-down pool: values are computed when needed
                    fut = None
                if fut is None:
                    return
                self._pending.append((k, fut))
                want -= k
