"""One process pool per party process for the Paillier engine, and its worker functions.

The pool is created lazily on first use, once, with ``n_workers()`` processes
(``[compute].workers`` via :func:`configure`, else ``FEDCREDIT_CRYPTO_WORKERS``
or the cores this process may run on), uses the ``spawn`` start method (safe
next to gRPC threads) and is shut down at exit.

:func:`parallel_map` runs on the party's current compute backend
(:func:`fedcredit.compute.current`): this pool by default, or a Dask cluster
of the party's own (``[compute] backend = "dask"``, see ``docs/compute.md``).
The worker functions below are the same for both.

Workers receive the key material they need (``n``, or ``p`` and ``q`` for the
key owner) as bytes, only within the party's own pool or cluster; private key
bytes are :class:`KeyBytes`, whose ``repr`` never shows them (a distributed
engine logs the ``repr`` of a failed task). Workers rebuild and cache their
engines (fixed-base tables) per key fingerprint and never log or return key
material.  Ciphertexts travel as fixed-width big-endian bytes.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import threading
import types
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

__all__ = ["n_workers", "get_pool", "shutdown", "parallel_map", "local_map", "configure", "KeyBytes", "PARALLEL_MIN"]

#: Vectors shorter than this are processed in the calling process.
PARALLEL_MIN = 512

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_idle_pool: ProcessPoolExecutor | None = None
_configured: int | None = None


class KeyBytes(bytes):
    """Private key material as bytes whose ``repr``/``str`` hide the value.

    Worker functions use it like ``bytes``; it pickles as itself, so a task
    description that a compute engine logs (Dask logs ``repr`` of a failed
    task's arguments) shows ``<key material>`` instead of the primes.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<key material>"

    __str__ = __repr__

    def __reduce__(self):
        return (KeyBytes, (bytes(self),))


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


def pool_size() -> int:
    """Workers of the current compute backend (for the local pool: ``n_workers()`` until it exists)."""
    from ..compute import current

    return current().n_workers


def local_pool_size() -> int:
    """Workers in this process's pool (``n_workers()`` if the pool is not created yet)."""
    return _pool_size or n_workers()


def shutdown() -> None:
    """Stop the pool (registered with :mod:`atexit`; safe to call twice)."""
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
    """Run ``fn(*args)`` for each tuple on the current compute backend; results in order.

    ``fn`` must be a module-level function (it is pickled by reference).

    Raises
    ------
    ComputeError
        When a distributed backend is unreachable or its workers keep failing.
    """
    from ..compute import current

    return current().map(fn, arg_list)


def _lowest_priority() -> None:
    """Initializer of the idle pool's worker: the lowest CPU priority (it runs when the cores are otherwise idle)."""
    try:
        os.nice(19)
    except OSError:  # pragma: no cover - not permitted: still correct, only not as polite
        pass


def submit_idle(fn, *args):
    """Submit background work to a one-process pool at the lowest CPU priority (nice 19); returns its future.

    For work computed ahead of use (uniform obfuscators for the next round's re-randomization): it
    takes only CPU time nothing else wants, so it never slows the party's own or a co-located
    party's foreground work; what is not ready when needed is computed then (``_take_uniform``).
    """
    global _idle_pool
    with _lock:
        if _idle_pool is None:
            _idle_pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                             initializer=_lowest_priority)
        pool = _idle_pool
    with _lock, _without_main():
        return pool.submit(fn, *args)


def submit_local(fn, *args):
    """Submit one task to this process's pool and return its future (background work, e.g. obfuscators)."""
    pool = get_pool()
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


# ---------------------------------------------------------------- worker side
_engines: dict = {}


def _owner_engine(p_bytes: bytes, q_bytes: bytes):
    from ._raw import OwnerEngine

    key = ("owner", hashlib.sha256(p_bytes + b"|" + q_bytes).digest())
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = OwnerEngine(int.from_bytes(p_bytes, "big"), int.from_bytes(q_bytes, "big"))
    return eng


def _public_engine(n_bytes: bytes):
    from ._raw import PublicEngine

    key = ("public", hashlib.sha256(n_bytes).digest())
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = PublicEngine(int.from_bytes(n_bytes, "big"))
    return eng


def w_owner_encrypt(p_bytes: bytes, q_bytes: bytes, ms: list, width: int) -> bytes:
    from ._raw import ints_to_bytes

    eng = _owner_engine(p_bytes, q_bytes)
    return ints_to_bytes(eng.encrypt(ms), width)


def w_owner_decrypt(p_bytes: bytes, q_bytes: bytes, data: bytes, width: int) -> list:
    from ._raw import bytes_to_ints

    eng = _owner_engine(p_bytes, q_bytes)
    return [int(m) for m in eng.decrypt(bytes_to_ints(data, width))]


def w_owner_obfuscate(p_bytes: bytes, q_bytes: bytes, data: bytes, width: int) -> bytes:
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _owner_engine(p_bytes, q_bytes)
    return ints_to_bytes(eng.obfuscate(bytes_to_ints(data, width)), width)


def w_public_encrypt(n_bytes: bytes, ms: list, width: int) -> bytes:
    from ._raw import ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.encrypt(ms), width)


def w_public_obfuscate(n_bytes: bytes, data: bytes, width: int) -> bytes:
    """Re-randomize with uniform ``r^n`` (results that may reach the key owner)."""
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.obfuscate(bytes_to_ints(data, width)), width)


def w_public_obfuscate_fixed(n_bytes: bytes, data: bytes, width: int) -> bytes:
    """Re-randomize with this worker's fixed base (results the key owner never receives)."""
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.obfuscate_fixed(bytes_to_ints(data, width)), width)


def w_uniform_obfuscators(n_bytes: bytes, count: int, width: int) -> bytes:
    """``count`` uniform obfuscators ``r^n mod n^2`` (``r`` uniform in ``Z_n^*``), computed ahead of use."""
    from ._raw import ints_to_bytes, uniform_obfuscators

    return ints_to_bytes(uniform_obfuscators(int.from_bytes(n_bytes, "big"), int(count)), width)


def w_histogram(n_bytes: bytes, data: bytes, width: int, bins: np.ndarray, n_bins: int) -> bytes:
    """Partial per-feature group sums over a chunk of rows, flattened feature-major."""
    from gmpy2 import mpz

    from ._raw import _obj_array, bytes_to_ints, group_sum, ints_to_bytes

    n = mpz(int.from_bytes(n_bytes, "big"))
    nsq = n * n
    cs = _obj_array(bytes_to_ints(data, width))
    out = []
    for j in range(bins.shape[1]):
        out.extend(group_sum(cs, bins[:, j], n_bins, nsq))
    return ints_to_bytes(out, width)


# ---------------------------------------------------------------- Okamoto-Uchiyama (fedcredit.crypto.ou)
def _ou_owner_engine(p_bytes: bytes, q_bytes: bytes, g_bytes: bytes, h_bytes: bytes, m_bits: int, r_bits: int):
    from ._ou_raw import OwnerEngine

    key = ("ou-owner", hashlib.sha256(p_bytes + b"|" + q_bytes + b"|" + g_bytes).digest(), m_bits, r_bits)
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = OwnerEngine(int.from_bytes(p_bytes, "big"), int.from_bytes(q_bytes, "big"),
                                          int.from_bytes(g_bytes, "big"), int.from_bytes(h_bytes, "big"),
                                          m_bits, r_bits)
    return eng


def w_ou_owner_encrypt(p_bytes: bytes, q_bytes: bytes, g_bytes: bytes, h_bytes: bytes, m_bits: int, r_bits: int,
                       ms: list, width: int) -> bytes:
    """OU encryption by the key owner (CRT) of a chunk of signed ints; fixed-width ciphertext bytes."""
    from ._raw import ints_to_bytes

    return ints_to_bytes(_ou_owner_engine(p_bytes, q_bytes, g_bytes, h_bytes, m_bits, r_bits).encrypt(ms), width)


def w_ou_histogram(n_bytes: bytes, data: bytes, width: int, bins: np.ndarray, n_bins: int) -> bytes:
    """OU bucket sums of a chunk of rows (:func:`fedcredit.crypto._ou_raw.bucket_sums`), feature-major bytes."""
    from gmpy2 import mpz

    from ._ou_raw import bucket_sums
    from ._raw import bytes_to_ints, ints_to_bytes

    n = mpz(int.from_bytes(n_bytes, "big"))
    return ints_to_bytes(bucket_sums(bytes_to_ints(data, width), bins, n_bins, n), width)
