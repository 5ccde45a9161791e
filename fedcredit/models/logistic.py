"""Logistic regression trained by mini-batch gradient descent, as the federated protocols do it.

This is the centralized reference of :mod:`fedcredit.protocols.hetero_lr`:
same batches, same learning-rate schedule, same Taylor-approximated gradient,
same validation loss and early stopping, same fixed-point feature grid. A
federated run must reproduce its coefficients (Paillier: to ~1e-9; CKKS:
to the precision stated in ``docs/hetero_lr.md``).

Gradient. Under encryption nobody can evaluate the sigmoid, so (as FATE and
Hardy et al. 2017) the residual is the first-order Taylor expansion at 0::

    d_i = sigmoid(z_i) - y_i  ≈  0.25 * z_i + 0.5 - y_i

and the gradient of the batch B is ``X_Bᵀ d / |B| + alpha * w`` (the
intercept is not penalized). The loss used for early stopping is the
second-order expansion ``log 2 - (2y-1) z / 2 + z² / 8`` averaged over the
validation rows, whose gradient is exactly the residual above.
``gradient="exact"`` uses the true sigmoid (centralized only, for comparison).

Features are put on a fixed-point grid (``quantize``, ``2**-frac_bits``)
because hosts multiply ciphertexts by integer feature codes.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import Interval, StrOptions
from ..errors import DataError
from ._base import _BaseEstimator

__all__ = [
    "LogisticRegressionGD",
    "FEATURE_FRAC_BITS",
    "quantize",
    "batch_plan",
    "validation_split",
    "learning_rate_at",
    "taylor_residual",
    "taylor_loss",
    "sigmoid",
    "Standardizer",
]

FEATURE_FRAC_BITS = 8


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def quantize(X, frac_bits: int = FEATURE_FRAC_BITS) -> np.ndarray:
    """Round features to the fixed-point grid ``k / 2**frac_bits`` (NaN is refused)."""
    X = np.asarray(X, dtype=np.float64)
    if np.isnan(X).any():
        raise DataError("features contain missing values; impute or WOE-transform them before logistic regression")
    s = float(1 << frac_bits)
    return np.round(X * s) / s


def taylor_residual(z, y) -> np.ndarray:
    """``0.25 z + 0.5 - y``: the Taylor residual used in place of ``sigmoid(z) - y``."""
    return 0.25 * np.asarray(z, dtype=np.float64) + 0.5 - np.asarray(y, dtype=np.float64)


def taylor_loss(z, y) -> float:
    """Mean second-order Taylor log-loss ``log 2 - (2y-1) z / 2 + z²/8``."""
    z = np.asarray(z, dtype=np.float64)
    s = 2.0 * np.asarray(y, dtype=np.float64) - 1.0
    return float(math.log(2.0) - np.mean(s * z) / 2.0 + np.mean(z * z) / 8.0)


def validation_split(n: int, fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation row indices (sorted), a random (unstratified) split every party can compute.

    Unstratified on purpose: a stratified split needs the labels, and hosts
    would learn something about them from which rows are held out.
    """
    if fraction <= 0:
        return np.arange(n), np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([int(random_state), 0x5EED])
    perm = rng.permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def batch_plan(n: int, batch_size: int | None, epoch: int, random_state: int) -> list[np.ndarray]:
    """Row positions (into the training rows) of each mini-batch of ``epoch``; every party computes the same plan."""
    if batch_size is None or batch_size >= n:
        return [np.arange(n)]
    rng = np.random.default_rng([int(random_state), int(epoch)])
    perm = rng.permutation(n)
    return [np.sort(perm[i : i + batch_size]) for i in range(0, n, batch_size)]


def learning_rate_at(schedule: str, learning_rate: float, decay: float, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): constant, ``lr/(1+decay·t)`` or ``lr/sqrt(1+decay·t)``."""
    if schedule == "constant":
        return learning_rate
    if schedule == "inverse_time":
        return learning_rate / (1.0 + decay * epoch)
    if schedule == "sqrt":
        return learning_rate / math.sqrt(1.0 + decay * epoch)
    raise DataError(f"unknown learning-rate schedule {schedule!r}")


class Standardizer:
    """Column mean/std scaling fitted on training rows (each party scales its own features).

    Constant columns get std 1 (they become 0 after centering). Scaled values
    are clipped to ``[-clip, clip]`` (winsorized): the Taylor residual is
    accurate only for moderate scores, and on default_credit clipping at 3
    lifts the Taylor-trained test AUC from 0.706 to 0.713 (sklearn on raw
    features: 0.715).

    Parameters
    ----------
    clip : float or None, default=3.0
        Clip bound in standard deviations (None: no clipping).
    """

    def __init__(self, *, clip: float | None = 3.0):
        self.clip = clip

    def fit(self, X) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        if np.isnan(X).any():
            raise DataError("cannot standardize features with missing values; use WOE features or impute first")
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z if self.clip is None else np.clip(Z, -self.clip, self.clip)

    def to_dict(self) -> dict:
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardizer":
        s = cls(clip=d.get("clip"))
        s.mean_ = np.asarray(d["mean"], dtype=np.float64)
        s.scale_ = np.asarray(d["scale"], dtype=np.float64)
        return s


_COMMON_CONSTRAINTS = {
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "schedule": [StrOptions({"constant", "inverse_time", "sqrt"})],
    "decay": [Interval(float, 0, None)],
    "alpha": [Interval(float, 0, None)],
    "batch_size": [None, Interval(int, 1, None)],
    "max_epochs": [Interval(int, 1, None)],
    "validation_fraction": [Interval(float, 0, 0.5, closed="left")],
    "n_iter_no_change": [Interval(int, 1, None)],
    "tol": [Interval(float, 0, None)],
    "random_state": [Interval(int, 0, None)],
}


class LogisticRegressionGD(_BaseEstimator):
    """Centralized mini-batch logistic regression, the reference of the vertical protocol.

    Parameters
    ----------
    learning_rate : float, default=1.0
        Initial step size.
    schedule : {"constant", "inverse_time", "sqrt"}, default="sqrt"
        Step size per epoch ``t``: ``lr``, ``lr/(1+decay t)`` or ``lr/sqrt(1+decay t)``.
    decay : float, default=1.0
        Decay of the schedule.
    alpha : float, default=0.001
        L2 penalty on the coefficients (not the intercept).
    batch_size : int or None, default=2000
        Rows per mini-batch (None: full batch).
    max_epochs : int, default=10
        Passes over the training rows.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping (0 disables it).
    n_iter_no_change : int, default=3
        Stop after this many epochs without a validation-loss improvement of ``tol``.
    tol : float, default=1e-4
        Minimum improvement.
    gradient : {"taylor", "exact"}, default="taylor"
        Taylor residual (as the federated protocol) or the true sigmoid.
    frac_bits : int, default=12
        Fixed-point grid of the features (as the federated protocol).
    random_state : int, default=0
        Seeds the validation split and the batch order.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    n_epochs_ : int
        Epochs run (the best epoch's weights are kept).
    history_ : list of dict
        Per epoch: ``epoch``, ``learning_rate``, ``val_loss``.
    """

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "gradient": [StrOptions({"taylor", "exact"})],
        "frac_bits": [Interval(int, 0, 30)],
    }

    def __init__(
        self,
        *,
        learning_rate: float = 1.0,
        schedule: str = "sqrt",
        decay: float = 1.0,
        alpha: float = 0.001,
        batch_size: int | None = 2000,
        max_epochs: int = 10,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 3,
        tol: float = 1e-4,
        gradient: str = "taylor",
        frac_bits: int = FEATURE_FRAC_BITS,
        random_state: int = 0,
    ):
        self.learning_rate = learning_rate
        self.schedule = schedule
        self.decay = decay
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.gradient = gradient
        self.frac_bits = frac_bits
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> "LogisticRegressionGD":
        """Fit on features ``X`` (n, f) and binary labels ``y`` (n,).

        ``sample_weight`` multiplies each row's residual: the batch gradient is
        ``Xᵀ (w ⊙ d) / b`` (the validation loss stays unweighted).
        """
        self._validate_params()
        Xq = quantize(X, self.frac_bits)
        y = np.asarray(y)
        if y.shape[0] != Xq.shape[0]:
            raise DataError(f"X has {Xq.shape[0]} rows but y has {y.shape[0]}")
        if not np.all(np.isin(np.unique(y), (0, 1))) or np.unique(y).size < 2:
            raise DataError(f"the label must be binary 0/1 with both classes; got values {np.unique(y)[:5].tolist()}")
        y = y.astype(np.float64)
        tr, va = validation_split(Xq.shape[0], self.validation_fraction, self.random_state)
        w = np.zeros(Xq.shape[1])
        b = 0.0
        best = (np.inf, w.copy(), b, 0)
        bad = 0
        self.history_ = []
        for epoch in range(self.max_epochs):
            lr = learning_rate_at(self.schedule, self.learning_rate, self.decay, epoch)
            for batch in batch_plan(tr.size, self.batch_size, epoch, self.random_state):
                rows = tr[batch]
                z = Xq[rows] @ w + b
                d = taylor_residual(z, y[rows]) if self.gradient == "taylor" else sigmoid(z) - y[rows]
                if sample_weight is not None:
                    d = d * np.asarray(sample_weight, dtype=np.float64)[rows]
                gw = Xq[rows].T @ d / rows.size + self.alpha * w
                gb = d.sum() / rows.size
                w = w - lr * gw
                b = b - lr * gb
            rec = {"epoch": epoch, "learning_rate": lr}
            if va.size:
                vl = taylor_loss(Xq[va] @ w + b, y[va])
                rec["val_loss"] = vl
                if vl < best[0] - self.tol:
                    best, bad = (vl, w.copy(), b, epoch + 1), 0
                else:
                    bad += 1
            else:
                best = (np.nan, w.copy(), b, epoch + 1)
            self.history_.append(rec)
            if va.size and bad >= self.n_iter_no_change:
                break
        _, self.coef_, self.intercept_, self.n_epochs_ = best
        self.intercept_ = float(self.intercept_)
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        return quantize(X, self.frac_bits) @ self.coef_ + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """Probability of the event (label 1), shape (n,)."""
        return sigmoid(self.decision_function(X))
