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
"""

from __future__ import annotations

import numpy as np

from ..._validation import Interval
from ...errors import DataError
from .._base import _BaseEstimator

__all__ = ["BinMapper", "find_bin_thresholds", "MAX_BINS_LIMIT"]

MAX_BINS_LIMIT = 256  # codes are uint8
_ALMOST_INF = 1e300


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
    """

    _parameter_constraints = {"max_bins": [Interval(int, 3, MAX_BINS_LIMIT, closed="both")]}
    _fitted_attr = "bin_thresholds_"

    def __init__(self, *, max_bins: int = 32):
        self.max_bins = max_bins

    def fit(self, X) -> "BinMapper":
        """Find the thresholds of every column of ``X`` (n, f), NaN = missing."""
        self._validate_params()
        X = _as_2d(X)
        self.bin_thresholds_ = [find_bin_thresholds(X[:, j], self.max_bins - 1) for j in range(X.shape[1])]
        self.n_bins_non_missing_ = np.array([t.size + 1 for t in self.bin_thresholds_], dtype=np.int64)
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
            codes = np.searchsorted(thr, col, side="left")
            codes[np.isnan(col)] = self.missing_values_bin_idx_
            out[:, j] = codes
        return out

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
