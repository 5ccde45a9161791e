"""Per-feature bucket sums of additive ciphertexts: the host's encrypted histogram kernel (hazmat).

One kernel for both schemes and every place the rows live (in this process, in a pool
worker, in a Dask partition): a homomorphic sum is a product modulo ``modulus`` (``n`` for
OU, ``n^2`` for Paillier), so every bucket is the product of the same ciphertexts whatever
the order -- the kernels below return the same integers as the one-pass-per-feature loop.

**Grouped passes.**  One modular multiplication costs about as much as the Python step
around it, so the cost of a histogram is the number of multiplications.  One pass per
feature multiplies every row once per feature.  When a node has many more rows than a
feature pair has joint codes, one pass over the rows with the *joint* code
``b1 * B2 + b2`` and then the two marginals of the joint table (one multiplication per
non-empty joint bucket and feature) costs ``rows + 2 * B1 * B2`` instead of ``2 * rows``:
at 32 bins that is 0.53x for a 40,000-row chunk.  Groups are formed greedily (small
features first, so binary flags share a pass three or four at a time) while adding a
feature costs less than a pass of its own; see :func:`plan_groups`.  Measured in
benchmarks/README.md, "Grouped bucket sums".

Nothing here logs or formats a ciphertext, and nothing here is secret: the host's bin codes
never leave it, and the ciphertexts are under the guest's key.
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpz

__all__ = ["feature_bucket_sums", "plan_groups", "MAX_JOINT"]

#: Largest joint table one pass may fill (buckets held at once).
MAX_JOINT = 1 << 16


def plan_groups(n_rows: int, sizes) -> list[list[int]]:
    """Features grouped for joint passes, each group a list of column indexes.

    Parameters
    ----------
    n_rows : int
        Rows of the chunk the passes run over.
    sizes : sequence of int
        Codes used per feature (its largest code + 1).

    Returns
    -------
    list of list of int
        A partition of ``range(len(sizes))``.  A group of ``k > 1`` features with joint size
        ``P`` costs about ``n_rows + k * min(P, n_rows)`` multiplications, a single feature
        ``n_rows``; a feature joins the current group while that is cheaper than its own
        pass and the joint table stays within :data:`MAX_JOINT`.
    """
    n = int(n_rows)
    groups: list[list[int]] = []
    cur: list[int] = []
    joint = 1
    for j in np.argsort(np.asarray(sizes, dtype=np.int64), kind="stable").tolist():
        b = max(1, int(sizes[j]))
        k = len(cur)
        if cur and joint * b <= MAX_JOINT:
            marginal_before = k * min(joint, n) if k > 1 else 0
            if (k + 1) * min(joint * b, n) - marginal_before < n:
                cur.append(j)
                joint *= b
                continue
        if cur:
            groups.append(cur)
        cur, joint = [j], b
    if cur:
        groups.append(cur)
    return groups


def _pass(cs, codes: list, size: int, modulus) -> list:
    """One pass: ``acc[c] = prod(cs[i] for codes[i] == c)``, ``None`` where no row has code ``c``."""
    acc: list = [None] * size
    for c, b in zip(cs, codes):
        a = acc[b]
        acc[b] = c if a is None else a * c % modulus
    return acc


def feature_bucket_sums(cs, bins: np.ndarray, n_bins: int, modulus, *, grouped: bool = True) -> list:
    """Homomorphic bucket sums: ``out[j * n_bins + b] = prod(cs[i] for rows i with bins[i, j] == b)``.

    Parameters
    ----------
    cs : sequence of mpz, length rows
        Ciphertexts (a list or an object array).
    bins : ndarray of int, shape (rows, features)
        Values in ``[0, n_bins)`` (checked by the caller).
    n_bins : int
    modulus : mpz
        ``n`` (OU) or ``n^2`` (Paillier).
    grouped : bool, default=True
        ``False``: one pass per feature (the baseline the benchmarks and tests compare with).

    Returns
    -------
    list of mpz
        ``features * n_bins`` values, feature-major; an empty bucket holds ``1``.
    """
    bins = np.asarray(bins)
    n_rows, n_feat = bins.shape
    n_bins = int(n_bins)
    one = mpz(1)
    if n_rows == 0 or n_feat == 0:
        return [one] * (n_feat * n_bins)
    cs = cs if isinstance(cs, list) else list(cs)
    out: list = [None] * (n_feat * n_bins)
    sizes = bins.max(axis=0).astype(np.int64) + 1
    for group in plan_groups(n_rows, sizes) if grouped else [[j] for j in range(n_feat)]:
        if len(group) == 1:
            j = group[0]
            out[j * n_bins:(j + 1) * n_bins] = _pass(cs, bins[:, j].tolist(), n_bins, modulus)
            continue
        strides, joint = [], 1
        for j in reversed(group):
            strides.append(joint)
            joint *= int(sizes[j])
        strides.reverse()
        codes = np.zeros(n_rows, dtype=np.int64)
        for j, s in zip(group, strides):
            codes += bins[:, j].astype(np.int64) * s
        acc = _pass(cs, codes.tolist(), joint, modulus)
        present = np.flatnonzero(np.bincount(codes, minlength=joint))
        vals = [acc[c] for c in present.tolist()]
        for j, s in zip(group, strides):
            m: list = [None] * n_bins
            for v, b in zip(vals, ((present // s) % int(sizes[j])).tolist()):
                a = m[b]
                m[b] = v if a is None else a * v % modulus
            out[j * n_bins:(j + 1) * n_bins] = m
    return [one if x is None else x for x in out]
