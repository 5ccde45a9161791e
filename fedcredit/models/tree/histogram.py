"""Gradient/hessian histograms per node x feature x bin, over any additive type.

One code path serves the plaintext reference (numpy ``int64``/``float64``
arrays of shape ``(n, 2)`` holding ``(g, h)`` per row) and the federated host
(a Paillier ciphertext vector holding one packed ``(g, h)`` per row). It needs
only two primitives of the value type:

``values[rows]``
    the sub-vector at integer positions ``rows``;
``group_sum(group_ids, n_groups)``
    the vector of ``n_groups`` sums of the elements sharing a group id.

A histogram is stored *flat*: element ``feature * n_bins + bin`` holds the sum
of the node's values whose code for ``feature`` is ``bin``. Histogram
subtraction (``sibling = parent - child``) is exact for integer and
ciphertext values, so only the smaller child of a split is ever built.

A vector type may also offer ``histogram(codes, n_bins)`` with the same
meaning as :func:`build_histogram` on its rows (the Paillier
``CipherVector`` does, splitting the rows over the party's process pool);
:func:`build_histogram` then uses it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["take", "group_sum", "build_histogram", "subtract", "as_grid", "histogram_group_ids"]


def take(values, rows: np.ndarray):
    """``values[rows]`` (numpy arrays and ciphertext vectors both index with integer arrays)."""
    return values[np.asarray(rows, dtype=np.int64)]


def group_sum(values, group_ids: np.ndarray, n_groups: int):
    """Sums of ``values`` per group; the group of element ``i`` is ``group_ids[i]``.

    For numpy arrays the sums are exact for integer dtypes (sort + ``reduceat``,
    no float round trip) and use ``bincount`` for float dtypes.
    """
    group_ids = np.asarray(group_ids, dtype=np.int64)
    if not isinstance(values, np.ndarray):
        return values.group_sum(group_ids, n_groups)
    vals = values.reshape(len(values), -1)
    k = vals.shape[1]
    if vals.dtype.kind == "f":
        out = np.stack([np.bincount(group_ids, weights=vals[:, c], minlength=n_groups) for c in range(k)], axis=1)
    else:
        out = np.zeros((n_groups, k), dtype=vals.dtype)
        if len(group_ids):
            order = np.argsort(group_ids, kind="stable")
            sorted_ids = group_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            out[sorted_ids[starts]] = np.add.reduceat(vals[order], starts, axis=0)
    return out.reshape((n_groups,) + values.shape[1:])


def histogram_group_ids(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Flat group ids ``feature * n_bins + code`` of every (row, feature) of ``codes`` (m, f), row-major."""
    m, f = codes.shape
    return (codes.astype(np.int64) + (np.arange(f, dtype=np.int64) * n_bins)[None, :]).ravel()


def build_histogram(values, codes: np.ndarray, rows: np.ndarray, n_bins: int):
    """Flat histogram of ``values`` over the node ``rows``.

    Parameters
    ----------
    values : ndarray of shape (n, 2) or a ciphertext vector of length n
        Per-row gradient statistics of every row of the tree (one additive element per row).
    codes : ndarray of shape (n, f), uint8
        Bin codes of this party's features for the same rows.
    rows : ndarray of int
        Positions of the node's rows in ``values``/``codes``.
    n_bins : int
        Codes per feature (including the missing bin).

    Returns
    -------
    histogram : same type as ``values``, length ``f * n_bins``
    """
    rows = np.asarray(rows, dtype=np.int64)
    f = codes.shape[1]
    if hasattr(values, "histogram"):
        # the node's codes as they are (uint8): an int64 copy would be 8x the codes (192 MB at the
        # root of a 80k x 300 host table); both cipher kernels take any integer dtype
        return take(values, rows).histogram(codes[rows], n_bins)
    gids = histogram_group_ids(codes[rows], n_bins)
    return group_sum(take(values, np.repeat(rows, f)), gids, f * n_bins)


def subtract(parent, child):
    """``parent - child`` (the sibling's histogram)."""
    return parent - child


def as_grid(hist: np.ndarray, n_features: int, n_bins: int) -> np.ndarray:
    """View a flat plaintext histogram as ``(n_features, n_bins, 2)``."""
    return np.asarray(hist).reshape(n_features, n_bins, -1)
