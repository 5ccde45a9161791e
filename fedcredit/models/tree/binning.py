"""Quantile binning of one party's features into small integer codes.

Every party bins its own features locally with :class:`BinMapper`; because
the thresholds depend only on that party's column values, the codes are the
same whether the features sit in a federated party or in a centralized
table. The algorithm is scikit-learn's ``_find_binning_thresholds`` (distinct
midpoints when a column has few values, otherwise ``averaged_inverted_cdf``
percentiles), so a :class:`~fedcredit.models.tree.gbdt.GBDTReference` with
``max_bins=32`` bins exactly like ``HistGradientBoostingClassifier(max_bins=31)``.

A value ``x`` maps to bin ``i`` iff ``thresholds[i - 1] < x <= thresholds[i]``;
NaN maps to the missing-value bin ``max_bins - 1``. A split "at bin ``b``"
therefore sends ``x <= thresholds[b]`` to the left child.

Categorical features (``categorical=``; their values are the category codes
``0 .. k-1`` of :class:`fedcredit.data.Table`) get one bin per category seen
in the training rows, in code order, as scikit-learn's
``HistGradientBoostingClassifier(categorical_features=...)``. When there are
more categories than ``max_bins - 1``, the ``max_bins - 2`` most frequent
keep their own bin and the rest share one last "other" bin
(:func:`category_bins`). A category never seen in the training rows, like NaN,
maps to the missing-value bin: it follows the split's missing branch, at
training and at scoring (:func:`~fedcredit.models.tree.predictor.local_decision`).
"""

from __future__ import annotations

import numpy as np

from ..._validation import Interval
from ...errors import DataError
from .._base import _BaseEstimator

__all__ = ["BinMapper", "find_bin_thresholds", "category_bins", "MAX_BINS_LIMIT"]

MAX_BINS_LIMIT = 256  # codes are uint8
_ALMOST_INF = 1e300


def category_bins(column: np.ndarray, n_bins_non_missing: int) -> list[np.ndarray]:
    """The category codes of each bin of a categorical column (codes ``0 .. k-1``, NaN = missing).

    One bin per distinct code, in code order; beyond ``n_bins_non_missing``
    codes, the ``n_bins_non_missing - 1`` most frequent (ties: the smaller
    code) keep their own bin and the others share the last bin ("other").

    Raises
    ------
    DataError
        A value that is not a non-negative integer code.
    """
    col = np.asarray(column, dtype=np.float64)
    col = col[~np.isnan(col)]
    if len(col) and (np.any(col < 0) or np.any(col != np.floor(col))):
        raise DataError("a categorical feature must hold non-negative integer category codes (or NaN)")
    codes, counts = np.unique(col, return_counts=True)
    if codes.size <= n_bins_non_missing:
        return [np.array([c]) for c in codes]
    order = np.lexsort((codes, -counts))  # most frequent first, ties by code
    own = np.sort(codes[order[: n_bins_non_missing - 1]])
    other = np.sort(codes[order[n_bins_non_missing - 1:]])
    return [np.array([c]) for c in own] + [other]


def find_bin_thresholds(column: np.ndarray, n_bins_non_missing: int) -> np.ndarray:
    """Increasing thresholds splitting ``column`` into at most ``n_bins_non_missing`` bins.

    Parameters
    ----------
    column : ndarray of shape (n,)
        One feature; NaN entries are ignored.
    n_bins_non_missing : int
        Upper bound on the number of bins for non-missing values.

    Returns
    -------
    thresholds : ndarray of shape (k - 1,)
        ``k <= n_bins_non_missing`` bins; empty for a constant (or all-NaN) column.
    """
    col = np.asarray(column, dtype=np.float64)
    col = np.sort(col[~np.isnan(col)])
    distinct = np.unique(col)
    if distinct.size <= 1:
        return np.empty(0, dtype=np.float64)
    if distinct.size <= n_bins_non_missing:
        thr = 0.5 * (distinct[:-1] + distinct[1:])
    else:
        pct = np.linspace(0, 100, num=n_bins_non_missing + 1)[1:-1]
        thr = np.percentile(col, pct, method="averaged_inverted_cdf")
        thr = np.unique(thr)
    return np.clip(thr, None, _ALMOST_INF).astype(np.float64)


class BinMapper(_BaseEstimator):
    """Map each feature to at most ``max_bins`` integer codes (one reserved for missing).

    Parameters
    ----------
    max_bins : int, default=32
        Total number of codes per feature including the missing-value bin:
        non-missing values use codes ``0 .. max_bins - 2`` and NaN uses
        ``max_bins - 1``.

    Attributes
    ----------
    bin_thresholds_ : list of ndarray
        Per feature, the increasing thresholds (``n_bins_non_missing_[j] - 1`` of them).
    n_bins_non_missing_ : ndarray of shape (n_features,)
        Number of bins used by non-missing values of each feature (1 for a constant column).
    missing_values_bin_idx_ : int
        The code of missing values, ``max_bins - 1``.
    is_categorical_ : ndarray of bool of shape (n_features,)
    bin_categories_ : list of (list of ndarray or None)
        Per categorical feature, the category codes of each of its bins (None for a numeric feature).
    """

    _parameter_constraints = {"max_bins": [Interval(int, 3, MAX_BINS_LIMIT, closed="both")]}
    _fitted_attr = "bin_thresholds_"

    def __init__(self, *, max_bins: int = 32, categorical=None):
        self.max_bins = max_bins
        self.categorical = categorical

    def fit(self, X) -> "BinMapper":
        """Find the thresholds of every column of ``X`` (n, f), NaN = missing."""
        self._validate_params()
        X = _as_2d(X)
        cat = np.zeros(X.shape[1], dtype=bool) if self.categorical is None else np.asarray(self.categorical)
        if cat.shape != (X.shape[1],) or cat.dtype != bool:
            raise DataError(f"categorical must be one bool per feature ({X.shape[1]})")
        self.is_categorical_ = cat.copy()
        self.bin_thresholds_, self.bin_categories_ = [], []
        for j in range(X.shape[1]):
            if cat[j]:
                self.bin_categories_.append(category_bins(X[:, j], self.max_bins - 1))
                self.bin_thresholds_.append(np.empty(0, dtype=np.float64))
            else:
                self.bin_categories_.append(None)
                self.bin_thresholds_.append(find_bin_thresholds(X[:, j], self.max_bins - 1))
        self.n_bins_non_missing_ = np.array(
            [max(len(c), 1) if c is not None else t.size + 1 for t, c in zip(self.bin_thresholds_, self.bin_categories_)],
            dtype=np.int64)
        self.missing_values_bin_idx_ = self.max_bins - 1
        return self

    def transform(self, X) -> np.ndarray:
        """Codes of ``X`` as a uint8 array of the same shape."""
        self._check_fitted()
        X = _as_2d(X)
        if X.shape[1] != len(self.bin_thresholds_):
            raise DataError(f"X has {X.shape[1]} features, the BinMapper was fitted on {len(self.bin_thresholds_)}")
        out = np.empty(X.shape, dtype=np.uint8)
        for j, thr in enumerate(self.bin_thresholds_):
            col = X[:, j]
            if self.bin_categories_[j] is not None:
                out[:, j] = self._category_codes(j, col)
                continue
            codes = np.searchsorted(thr, col, side="left")
            codes[np.isnan(col)] = self.missing_values_bin_idx_
            out[:, j] = codes
        return out

    def _category_codes(self, j: int, col: np.ndarray) -> np.ndarray:
        """Bins of categorical feature ``j``: the bin of each known code, the missing bin for NaN and unseen codes."""
        bins = self.bin_categories_[j]
        known = np.concatenate(bins) if bins else np.empty(0)
        of = np.concatenate([np.full(len(c), b) for b, c in enumerate(bins)]) if bins else np.empty(0, np.int64)
        order = np.argsort(known)
        known, of = known[order], of[order]
        out = np.full(len(col), self.missing_values_bin_idx_, dtype=np.int64)
        if known.size:
            pos = np.minimum(np.searchsorted(known, col), known.size - 1)
            hit = ~np.isnan(col) & (known[pos] == col)
            out[hit] = of[pos[hit]]
        return out

    def categories(self, feature: int, bins) -> list[float]:
        """Sorted category codes of ``bins`` of categorical ``feature``."""
        cats = self.bin_categories_[feature]
        chosen = [cats[b] for b in bins if 0 <= b < len(cats)]
        return sorted(float(c) for c in np.concatenate(chosen)) if chosen else []

    def category_partition(self, feature: int, left_bins) -> tuple[list[float], list[float]]:
        """The category codes going left and right for a split sending ``left_bins`` left."""
        left = set(int(b) for b in left_bins)
        n = len(self.bin_categories_[feature])
        return (self.categories(feature, sorted(left)),
                self.categories(feature, [b for b in range(n) if b not in left]))

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def threshold(self, feature: int, bin_index: int) -> float:
        """The value ``t`` of a split at ``bin_index``: ``x <= t`` goes left.

        ``bin_index`` equal to the last non-missing bin gives ``inf`` (every
        non-missing value goes left; only missing values can go right).
        """
        thr = self.bin_thresholds_[feature]
        return float(thr[bin_index]) if bin_index < thr.size else float("inf")


def _as_2d(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"X must be 2-d (n_rows, n_features); got shape {X.shape}")
    return X
