"""Best split of a node from its (G, H) histograms.

The gain of sending ``(G_L, H_L)`` left and ``(G_R, H_R)`` right is the
XGBoost/scikit-learn score (the constant 1/2 dropped)::

    gain = G_L**2 / (H_L + lambda) + G_R**2 / (H_R + lambda) - G**2 / (H + lambda)

A candidate is valid when both children have a hessian sum of at least
``min_child_weight`` and its gain exceeds ``min_split_gain``. Missing values
(the last code of every feature) learn their direction: for every threshold
bin both "missing right" and "missing left" are scored; when the node has
missing values, the split "all non-missing left, missing right" is scored too.

Monotone constraints follow scikit-learn's ``monotonic_cst``
(``_hist_gradient_boosting/splitting.pyx``): when a tree has any, every
node carries bounds ``[lower, upper]`` for its children's values (inherited
from its ancestors, see ``grower.py``); a child's value is the Newton step
clipped to those bounds, and the gain is formed from the clipped values::

    gain = G * v - G_L * v_L - G_R * v_R        (v = the node's own clipped value)

which is the formula above when nothing is clipped. A split on a feature
constrained ``+1`` is a candidate only when ``v_L <= v_R`` (``-1``: ``v_L >= v_R``).

Categorical features (``categorical``) get category-subset splits, as
LightGBM and scikit-learn's ``HistGradientBoostingClassifier(categorical_features=...)``:
the node's non-empty category bins are ordered by ``G / (H + lambda)`` (the
same regularization as the leaf value; ties by bin), and every prefix of that
order is a candidate left set (Fisher 1958: for a convex loss the best binary
partition of the categories is a prefix of this order), with missing values
(and categories unseen in training, binned as missing) scored on either side
as for numeric splits. A categorical split's :attr:`SplitInfo.left_bins` lists
its left bins; it may carry no monotone constraint.

Histograms may be integers (fixed-point sums, scaled by ``scale``) or floats.
All sums are formed in the histogram's own type and only converted to float
at the end, so two parties holding the same integer histogram choose the same
split bit for bit. Ties are broken by the first candidate in the order
(feature, bin, missing right before missing left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SplitParams", "SplitInfo", "find_best_split", "leaf_value", "split_gain"]

_EPS = 1e-300


@dataclass(frozen=True)
class SplitParams:
    """The split-finding hyperparameters of a tree.

    Parameters
    ----------
    reg_lambda : float
        L2 regularization of leaf weights.
    min_child_weight : float
        Minimum hessian sum in each child.
    min_split_gain : float
        A split must gain strictly more than this.
    """

    reg_lambda: float = 1.0
    min_child_weight: float = 1e-3
    min_split_gain: float = 0.0


@dataclass(frozen=True)
class SplitInfo:
    """The best split of one node over the features of one histogram grid."""

    gain: float
    feature: int
    bin: int
    missing_left: bool
    left_g: float
    left_h: float
    left_bins: tuple | None = None  # categorical split: the bins sent left (``bin`` is then -1)


def leaf_value(g: float, h: float, reg_lambda: float) -> float:
    """Newton step ``-G / (H + lambda)`` (before shrinkage)."""
    return -g / max(h + reg_lambda, _EPS)


def split_gain(gl, hl, gr, hr, g, h, reg_lambda: float):
    """Gain of a split (vectorized)."""
    return gl * gl / np.maximum(hl + reg_lambda, _EPS) + gr * gr / np.maximum(hr + reg_lambda, _EPS) - g * g / max(
        h + reg_lambda, _EPS
    )


def _bounded_gain(gl, hl, gr, hr, g_tot, node_value, reg_lambda, bounds, monotone):
    """Gain from children values clipped to ``bounds``, and where the split respects ``monotone``
    (sklearn's ``_split_gain``: a split violating its feature's constraint is no candidate)."""
    lo, hi = bounds
    vl = np.clip(-gl / np.maximum(hl + reg_lambda, _EPS), lo, hi)
    vr = np.clip(-gr / np.maximum(hr + reg_lambda, _EPS), lo, hi)
    cst = np.asarray(monotone, dtype=np.int8)[:, None]
    respects = ~(((cst == 1) & (vl > vr)) | ((cst == -1) & (vl < vr)))
    return g_tot * node_value - gl * vl - gr * vr, respects


def find_best_split(
    grid: np.ndarray,
    n_bins_non_missing: np.ndarray,
    total: tuple,
    params: SplitParams,
    *,
    scale: float = 1.0,
    feature_mask: np.ndarray | None = None,
    monotone: np.ndarray | None = None,
    bounds: tuple[float, float] | None = None,
    node_value: float | None = None,
    categorical: np.ndarray | None = None,
) -> SplitInfo | None:
    """Best split of a node over the features of ``grid``.

    Parameters
    ----------
    grid : ndarray of shape (n_features, n_bins, 2)
        Per feature and bin, the sum of ``(g, h)`` of the node's rows; the
        last bin holds the missing values. Integer or float.
    n_bins_non_missing : ndarray of shape (n_features,)
        Bins used by non-missing values of each feature.
    total : (G, H)
        The node's sums, in the same type as ``grid``.
    params : SplitParams
    scale : float, default=1.0
        Divide integer sums by this to get real values (the fixed-point scale).
    feature_mask : ndarray of bool, optional
        Features that may be used (feature subsampling).
    monotone : ndarray of int8, optional
        Per feature ``+1`` (increasing), ``-1`` (decreasing) or 0. Given
        together with ``bounds`` and ``node_value`` when the tree has
        constraints (on any party's features); None keeps the unconstrained gain.
    bounds : (float, float), optional
        Lower and upper bound of the children's values (before shrinkage).
    node_value : float, optional
        The node's own value (clipped to its bounds, before shrinkage).
    categorical : ndarray of bool, optional
        Per feature, whether it is categorical (category-subset splits).

    Returns
    -------
    SplitInfo or None
        None when no candidate is valid.
    """
    grid = np.asarray(grid)
    f, n_bins, _ = grid.shape if grid.ndim == 3 else (0, 0, 2)
    if f == 0:
        return None
    G, H = total
    nb = np.asarray(n_bins_non_missing, dtype=np.int64)
    non_missing = grid[:, : n_bins - 1, :]
    miss = grid[:, n_bins - 1, :]  # (f, 2)
    cl = np.cumsum(non_missing, axis=1)  # (f, n_bins-1, 2): sums of bins <= b
    b = np.arange(n_bins - 1)[None, :]
    has_missing = miss[:, 1] > 0
    # candidate bins: b <= nb-2 always; b == nb-1 only for "missing right" when missing exist
    valid_r = (b <= nb[:, None] - 2) | ((b == nb[:, None] - 1) & has_missing[:, None])
    valid_l = (b <= nb[:, None] - 2) & has_missing[:, None]
    if feature_mask is not None:
        feature_mask = np.asarray(feature_mask, dtype=bool)
        valid_r &= feature_mask[:, None]
        valid_l &= feature_mask[:, None]
    if categorical is not None:  # no threshold splits on a categorical feature
        numeric = ~np.asarray(categorical, dtype=bool)[:, None]
        valid_r &= numeric
        valid_l &= numeric
    left_r = cl
    left_l = cl + miss[:, None, :]
    lam = params.reg_lambda
    g_tot, h_tot = float(G) / scale, float(H) / scale
    gains = []
    lefts = []
    for left, valid in ((left_r, valid_r), (left_l, valid_l)):
        right = np.stack([G - left[..., 0], H - left[..., 1]], axis=-1)
        gl, hl = left[..., 0].astype(np.float64) / scale, left[..., 1].astype(np.float64) / scale
        gr, hr = right[..., 0].astype(np.float64) / scale, right[..., 1].astype(np.float64) / scale
        if monotone is None:
            gain = split_gain(gl, hl, gr, hr, g_tot, h_tot, lam)
        else:
            gain, respects = _bounded_gain(gl, hl, gr, hr, g_tot, node_value, lam, bounds, monotone)
            valid = valid & respects
        ok = valid & (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
        ok &= gain > params.min_split_gain
        gains.append(np.where(ok, gain, -np.inf))
        lefts.append((gl, hl))
    # order (feature, bin, direction): direction 0 = missing right, 1 = missing left
    stacked = np.stack(gains, axis=-1)  # (f, n_bins-1, 2)
    if stacked.size == 0:
        return None
    per_feature = stacked.reshape(f, -1)
    arg = np.argmax(per_feature, axis=1)
    feat_gain = per_feature[np.arange(f), arg]
    cat_best: dict[int, SplitInfo] = {}
    if categorical is not None:
        for j in np.flatnonzero(np.asarray(categorical, dtype=bool)):
            if feature_mask is not None and not feature_mask[j]:
                continue
            info = _best_category_split(grid[j], int(nb[j]), (G, H), params, scale, int(j),
                                        None if monotone is None else (bounds, node_value))
            if info is not None:
                cat_best[int(j)] = info
                feat_gain[j] = info.gain
    feat = int(np.argmax(feat_gain))  # ties: the first feature
    if not np.isfinite(feat_gain[feat]):
        return None
    if feat in cat_best:
        return cat_best[feat]
    bin_, direction = divmod(int(arg[feat]), 2)
    gl, hl = lefts[direction]
    return SplitInfo(
        gain=float(feat_gain[feat]),
        feature=feat,
        bin=int(bin_),
        missing_left=bool(direction),
        left_g=float(gl[feat, bin_]),
        left_h=float(hl[feat, bin_]),
    )


def _best_category_split(hist: np.ndarray, nb: int, total: tuple, params: SplitParams, scale: float, feature: int,
                         constrained) -> SplitInfo | None:
    """Best category-subset split of one categorical feature from its ``(n_bins, 2)`` histogram.

    Candidates, in order: for ``k = 1 ..`` (the ``k`` first categories of the
    ``G / (H + lambda)`` order left) missing right, then missing left; last,
    all categories left and missing right. Sums stay in the histogram's type
    until the gain, so parties holding the same integer histogram agree bit for bit.
    """
    G, H = total
    lam = params.reg_lambda
    cats = hist[:nb]
    miss = hist[-1]
    present = np.flatnonzero(cats[:, 1] > 0)
    has_missing = miss[1] > 0
    if len(present) == 0:
        return None
    g = cats[present, 0].astype(np.float64) / scale
    h = cats[present, 1].astype(np.float64) / scale
    order = present[np.lexsort((present, g / np.maximum(h + lam, _EPS)))]
    cl = np.cumsum(cats[order], axis=0)  # (m, 2): sums of the first k + 1 categories
    m = len(order)
    cand = []  # (prefix length, missing_left, left sums)
    for k in range(1, m):
        cand.append((k, False, cl[k - 1]))
        if has_missing:
            cand.append((k, True, cl[k - 1] + miss))
    if has_missing:
        cand.append((m, False, cl[m - 1]))
    if not cand:
        return None
    left = np.array([c[2] for c in cand])
    gl, hl = left[:, 0].astype(np.float64) / scale, left[:, 1].astype(np.float64) / scale
    gr, hr = (G - left[:, 0]).astype(np.float64) / scale, (H - left[:, 1]).astype(np.float64) / scale
    if constrained is None:
        gain = split_gain(gl, hl, gr, hr, float(G) / scale, float(H) / scale, lam)
    else:
        (bounds, node_value) = constrained
        gain, _ = _bounded_gain(gl[None], hl[None], gr[None], hr[None], float(G) / scale, node_value, lam, bounds,
                                np.zeros(1, dtype=np.int8))
        gain = gain[0]
    ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight) & (gain > params.min_split_gain)
    gain = np.where(ok, gain, -np.inf)
    best = int(np.argmax(gain))
    if not np.isfinite(gain[best]):
        return None
    k, missing_left, _ = cand[best]
    return SplitInfo(gain=float(gain[best]), feature=feature, bin=-1, missing_left=missing_left,
                     left_g=float(gl[best]), left_h=float(hl[best]),
                     left_bins=tuple(sorted(int(b) for b in order[:k])))
