"""``Xᵀ E(d)`` for small integer feature codes: bucket (Pippenger-style) multi-exponentiation.

Computing ``sum_i k_i * E(d_i)`` for one feature column costs ``n`` modular
exponentiations the naive way (``E(d_i)^(k_i)``, ~1.5 modular products per
exponent bit). With ``b``-bit codes split into windows of ``c`` bits, the
bucket method puts each ciphertext into the bucket of its digit (one
product per row and window, ``group_sum``), combines the ``2^c`` buckets with
running sums (``2^(c+1)`` products) and the windows with ``c`` squarings
each: about ``ceil(b/c) * (n + 2^(c+1))`` products per column. A column with
few distinct codes (WOE features: at most 33) uses one bucket per distinct
code. Negative codes are shifted by the column minimum and corrected with
one power of the column sum.

This module works on raw ciphertext integers (hazmat), through the public
hooks :meth:`CipherVector.raw_ints <fedcredit.crypto.paillier.CipherVector.raw_ints>`
(the vector's ``gmpy2.mpz`` values, read-only, no copy) and
:meth:`PublicKey.vector_from_raw <fedcredit.crypto.paillier.PublicKey.vector_from_raw>`
(results come back as derived, never fresh, vectors). Safety rule: a result
computed from someone else's ciphertexts is re-randomized before it leaves
the process -- ``vector_from_raw`` marks it derived, so ``to_blob``
obfuscates it; nothing here may build a "fresh" vector.
"""

from __future__ import annotations

import math

import gmpy2
import numpy as np
from gmpy2 import mpz, powmod

from ...crypto import parallel as _par
from ...crypto._raw import _reduce_product, bytes_to_ints, group_sum, ints_to_bytes

__all__ = ["matvec", "matvec_naive", "column_dot", "w_matvec", "warm_pool"]


def _best_window(bits: int, n: int) -> int:
    best, best_cost = 1, math.inf
    for c in range(1, min(bits, 16) + 1):
        cost = math.ceil(bits / c) * (n + 2 ** (c + 1)) + bits
        if cost < best_cost:
            best, best_cost = c, cost
    return best


def _pow_signed(c, k: int, nsq):
    if k >= 0:
        return powmod(c, k, nsq)
    return powmod(gmpy2.invert(c, nsq), -k, nsq)


def column_dot(cs: np.ndarray, k: np.ndarray, nsq, total=None):
    """``prod_i cs[i]^k[i] mod nsq`` for an int64 code vector ``k`` (any sign)."""
    k = np.asarray(k, dtype=np.int64)
    n = k.size
    if n == 0:
        return mpz(1)
    kmin = int(k.min())
    kp = k - kmin  # >= 0
    kmax = int(kp.max())
    acc = mpz(1)
    if kmax > 0:
        uniq = np.unique(kp)
        if uniq.size <= 64:
            # one bucket per distinct code, combined by running sums over the sorted codes
            gid = np.searchsorted(uniq, kp)
            buckets = group_sum(cs, gid, uniq.size, nsq)
            running = mpz(1)
            for j in range(uniq.size - 1, -1, -1):
                v = int(uniq[j])
                if v == 0:
                    break
                running = running * buckets[j] % nsq
                nxt = int(uniq[j - 1]) if j > 0 else 0
                acc = acc * powmod(running, v - max(nxt, 0), nsq) % nsq
        else:
            bits = kmax.bit_length()
            c = _best_window(bits, n)
            n_win = math.ceil(bits / c)
            mask = (1 << c) - 1
            for w in range(n_win - 1, -1, -1):
                if w != n_win - 1:
                    acc = powmod(acc, 1 << c, nsq)
                digits = (kp >> (w * c)) & mask
                buckets = group_sum(cs, digits, 1 << c, nsq)
                running = mpz(1)
                s = mpz(1)
                for v in range(mask, 0, -1):
                    running = running * buckets[v] % nsq
                    s = s * running % nsq
                acc = acc * s % nsq
    if kmin != 0:
        if total is None:
            total = _reduce_product(cs, nsq)
        acc = acc * _pow_signed(total, kmin, nsq) % nsq
    return acc


def _matvec_ints(cs, K: np.ndarray, nsq) -> list:
    total = _reduce_product(cs, nsq) if len(cs) else mpz(1)
    return [column_dot(cs, K[:, j], nsq, total) for j in range(K.shape[1])]


def _obj_array(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def w_matvec(nsq_bytes: bytes, data: bytes, width: int, K: np.ndarray) -> bytes:
    """Pool worker: ``Kᵀ c`` over a chunk of rows (ciphertexts as fixed-width bytes)."""
    nsq = mpz(int.from_bytes(nsq_bytes, "big"))
    return ints_to_bytes(_matvec_ints(_obj_array(bytes_to_ints(data, width)), K, nsq), width)


def _w_warm(i: int) -> int:
    return i


def warm_pool(rows: int, key_bits: int) -> None:
    """Start the party's pool workers (importing this module there) if batches of ``rows`` will use them.

    Called during setup, so the first epoch does not pay for starting processes.
    """
    if _par.use_parallel(rows, None, key_bits):
        _par.parallel_map(_w_warm, [(i,) for i in range(_par.pool_size())])


def matvec(cv, K: np.ndarray, *, parallel: bool | None = None):
    """``Kᵀ cv``: for each column ``j`` of the int64 matrix ``K`` (n, f), ``sum_i K[i, j] * cv[i]``.

    With ``parallel`` (None: 512 rows or more at production key sizes) the rows
    are split over the party's process pool and the partial sums multiplied
    together (the same plaintexts; only the ciphertext representatives differ,
    and results are re-randomized before they leave anyway).

    Returns a CipherVector of length ``f`` at ``cv``'s scale (codes are integers).
    """
    K = np.asarray(K, dtype=np.int64)
    if K.shape[0] != len(cv):
        raise ValueError(f"matvec: {K.shape[0]} rows vs {len(cv)} ciphertexts")
    pk = cv.public_key
    nsq = mpz(pk.nsquare)
    cs = cv.raw_ints()
    if K.shape[1] and _par.use_parallel(len(cs), parallel, pk.bits):
        w = pk.width
        data = ints_to_bytes(cs, w)
        nb = int(nsq).to_bytes(w, "big")
        parts = _par.split(len(cs), _par.pool_size())
        res = _par.parallel_map(w_matvec, [(nb, data[lo * w : hi * w], w, np.ascontiguousarray(K[lo:hi]))
                                            for lo, hi in parts])
        out = bytes_to_ints(res[0], w)
        for r in res[1:]:
            out = [a * b % nsq for a, b in zip(out, bytes_to_ints(r, w))]
    else:
        out = _matvec_ints(cs, K, nsq)
    return pk.vector_from_raw(out, frac_bits=cv.frac_bits)


def matvec_naive(cv, K: np.ndarray):
    """Reference ``Kᵀ cv`` with one exponentiation per row and column (for benchmarks and tests)."""
    K = np.asarray(K, dtype=np.int64)
    nsq = mpz(cv.public_key.nsquare)
    cs = cv.raw_ints()
    inv = [None] * len(cs)
    out = []
    for j in range(K.shape[1]):
        acc = mpz(1)
        for i, k in enumerate(K[:, j].tolist()):
            if k > 0:
                acc = acc * powmod(cs[i], k, nsq) % nsq
            elif k < 0:
                if inv[i] is None:
                    inv[i] = gmpy2.invert(cs[i], nsq)
                acc = acc * powmod(inv[i], -k, nsq) % nsq
        out.append(acc)
    return cv.public_key.vector_from_raw(out, frac_bits=cv.frac_bits)
