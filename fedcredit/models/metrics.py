"""Credit-risk evaluation metrics: AUC, KS, Gini, lift by decile, PSI.

All functions are numpy-only and party-agnostic: they take a binary label
vector and a score vector (higher score = more likely event, i.e. the
predicted probability of default) that one party holds. ROC and KS plots are
written as PNG files with matplotlib's Agg backend (imported lazily).

Ties are handled exactly: AUC is the Mann-Whitney statistic with tied scores
counting one half (the same value as ``sklearn.metrics.roc_auc_score``), and
the ROC/KS curves are evaluated only at distinct score thresholds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = [
    "roc_curve",
    "auc",
    "ks",
    "ks_curve",
    "gini",
    "lift_table",
    "psi",
    "evaluate_scores",
    "plot_roc",
    "plot_ks",
]


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise DataError(f"y_true and y_score must be 1-d; got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise DataError(f"y_true and y_score have different lengths: {y.shape[0]} and {s.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise DataError("y_score contains NaN or infinite values")
    u = np.unique(y)
    if not np.all(np.isin(u, (0, 1))):
        raise DataError(f"y_true must be binary 0/1; got values {u[:5].tolist()}")
    if u.size < 2:
        raise DataError("y_true contains only one class; AUC/KS are undefined")
    return y.astype(np.int64), s


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at distinct score thresholds.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels (1 = event/default).
    y_score : array-like of shape (n,)
        Scores; higher means more likely an event.

    Returns
    -------
    fpr, tpr : ndarray of shape (k + 1,)
        False/true positive rates, starting at (0, 0) and ending at (1, 1).
    thresholds : ndarray of shape (k + 1,)
        ``thresholds[i]`` is the score cut (predict 1 when score >= cut);
        the first entry is ``+inf``.
    """
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    # last index of each run of equal scores
    distinct = np.where(np.diff(s_sorted))[0]
    ends = np.r_[distinct, y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = (ends + 1) - tps
    pos = tps[-1]
    neg = fps[-1]
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    thresholds = np.r_[np.inf, s_sorted[ends]]
    return fpr, tpr, thresholds


def auc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count one half).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels.
    y_score : array-like of shape (n,)
        Scores.

    Returns
    -------
    float
        AUC in [0, 1].

    Raises
    ------
    DataError
        Non-binary labels, a single class, mismatched shapes or NaN scores.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def ks_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative event and non-event rates by score threshold (for KS plots).

    Returns
    -------
    thresholds, cum_event, cum_nonevent : ndarray
        Same as ``roc_curve``'s ``thresholds, tpr, fpr``.
    """
    fpr, tpr, thr = roc_curve(y_true, y_score)
    return thr, tpr, fpr


def ks(y_true, y_score) -> float:
    """Kolmogorov-Smirnov statistic: ``max |TPR - FPR|`` over thresholds.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels.
    y_score : array-like of shape (n,)
        Scores.

    Returns
    -------
    float
        KS in [0, 1].
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.max(np.abs(tpr - fpr)))


def gini(y_true, y_score) -> float:
    """Gini coefficient (accuracy ratio) ``2 * AUC - 1``."""
    return 2.0 * auc(y_true, y_score) - 1.0


def lift_table(y_true, y_score, *, n_bins: int = 10) -> list[dict]:
    """Lift by score quantile group (deciles by default), riskiest group first.

    Rows are sorted by descending score and cut into ``n_bins`` groups of
    (almost) equal size (``numpy.array_split`` of the sorted order; ties are
    broken by original row order, so the split is deterministic).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels.
    y_score : array-like of shape (n,)
        Scores.
    n_bins : int, default=10
        Number of groups.

    Returns
    -------
    list of dict
        One dict per group with ``group`` (1 = highest scores), ``count``,
        ``events``, ``event_rate``, ``lift`` (event rate / overall event
        rate), ``cum_events_share`` (share of all events captured so far),
        ``cum_lift``, ``min_score`` and ``max_score``.
    """
    y, s = _check(y_true, y_score)
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise DataError(f"n_bins must be a positive int; got {n_bins!r}")
    if n_bins > y.size:
        raise DataError(f"n_bins={n_bins} exceeds the number of rows ({y.size})")
    order = np.argsort(-s, kind="mergesort")
    base = y.mean()
    total_events = y.sum()
    rows = []
    cum_events = 0
    cum_n = 0
    for g, idx in enumerate(np.array_split(order, n_bins), start=1):
        ev = int(y[idx].sum())
        cum_events += ev
        cum_n += idx.size
        rate = ev / idx.size
        rows.append(
            {
                "group": g,
                "count": int(idx.size),
                "events": ev,
                "event_rate": float(rate),
                "lift": float(rate / base),
                "cum_events_share": float(cum_events / total_events),
                "cum_lift": float((cum_events / cum_n) / base),
                "min_score": float(s[idx].min()),
                "max_score": float(s[idx].max()),
            }
        )
    return rows


def psi(expected, actual, *, n_bins: int = 10, eps: float = 1e-6) -> float:
    """Population stability index of ``actual`` scores against ``expected``.

    Bins are quantiles of ``expected`` (at most ``n_bins``, fewer when scores
    repeat); ``PSI = sum((a - e) * ln(a / e))`` over bins, where ``e``/``a``
    are the shares of each population in the bin, floored at ``eps``.

    Parameters
    ----------
    expected : array-like of shape (n,)
        Reference scores (e.g. train).
    actual : array-like of shape (m,)
        Scores to compare (e.g. validation or production).
    n_bins : int, default=10
        Number of quantile bins.
    eps : float, default=1e-6
        Floor on bin shares, so an empty bin gives a large finite term.

    Returns
    -------
    float
        PSI (< 0.1 stable, 0.1-0.25 some shift, > 0.25 significant shift).
    """
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if e.size == 0 or a.size == 0:
        raise DataError("psi needs non-empty expected and actual scores")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(a))):
        raise DataError("psi: scores contain NaN or infinite values")
    cuts = np.unique(np.quantile(e, np.linspace(0, 1, n_bins + 1)[1:-1]))
    e_share = np.bincount(np.searchsorted(cuts, e, side="right"), minlength=cuts.size + 1) / e.size
    a_share = np.bincount(np.searchsorted(cuts, a, side="right"), minlength=cuts.size + 1) / a.size
    e_share = np.maximum(e_share, eps)
    a_share = np.maximum(a_share, eps)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def evaluate_scores(y_true, y_score, *, n_bins: int = 10) -> dict:
    """AUC, KS, Gini and the lift table in one JSON-able dict."""
    return {
        "auc": auc(y_true, y_score),
        "ks": ks(y_true, y_score),
        "gini": gini(y_true, y_score),
        "n": int(np.asarray(y_true).size),
        "event_rate": float(np.mean(y_true)),
        "lift": lift_table(y_true, y_score, n_bins=n_bins),
    }


def plot_roc(curves: dict[str, tuple], path) -> Path:
    """Write a ROC plot PNG.

    Parameters
    ----------
    curves : dict of str to (y_true, y_score)
        One curve per label (e.g. ``{"train": (y, s), "validation": (y2, s2)}``).
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    path = Path(path) if isinstance(path, (str, os.PathLike)) else path  # or a binary file object
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_ks(y_true, y_score, path, *, title: str = "KS") -> Path:
    """Write a KS plot PNG: cumulative event and non-event rates by score rank.

    Parameters
    ----------
    y_true, y_score : array-like of shape (n,)
        Labels and scores.
    path : str or Path
        PNG file to write.
    title : str, default="KS"
        Plot title.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    y, s = _check(y_true, y_score)
    fpr, tpr, thr = roc_curve(y, s)
    # x axis: share of the population scoring at or above each threshold
    counts = np.r_[0.0, np.searchsorted(np.sort(-s), -thr[1:], side="right") / y.size]
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(counts, tpr, label="cumulative events")
    ax.plot(counts, fpr, label="cumulative non-events")
    i = int(np.argmax(np.abs(tpr - fpr)))
    ax.vlines(counts[i], fpr[i], tpr[i], colors="red", linestyles="--", label=f"KS {abs(tpr[i] - fpr[i]):.3f}")
    ax.set_xlabel("share of population (highest score first)")
    ax.set_ylabel("cumulative share")
    ax.set_title(title)
    ax.legend(loc="lower right")
    path = Path(path) if isinstance(path, (str, os.PathLike)) else path  # or a binary file object
    fig.savefig(path, format="png", dpi=100)
    return path
