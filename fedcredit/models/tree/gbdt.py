"""Plaintext reference GBDT (binary logistic) — the yardstick for SecureBoost.

:class:`GBDTReference` runs the same binning, histogram, split and grower code
as the federated protocol on one joined table. With ``gh_bits`` set it
quantizes the gradients to the fixed-point grid the federated label holder
encrypts, so the federated model must equal it exactly (same splits, same
bins, same leaf weights); with ``gh_bits=None`` it is an ordinary float GBDT
comparable to scikit-learn's ``HistGradientBoostingClassifier(max_bins=max_bins - 1)``.

The helpers below (gradients, fixed-point quantization, per-tree sampling,
validation split, early stopping) are shared with the federated label holder
so both draw the same rows and features for each tree. The federated label
holder seeds its validation split with a secret it draws itself (hosts see the
split, so it must say nothing about the labels); pass that seed as
``validation_seed`` to reproduce its model here.

Label differential privacy (``label_epsilon``): before anything else the label
holder replaces its labels by randomized response (:func:`randomized_response`),
each label flipped independently with probability ``1 / (1 + e**epsilon)``,
from a generator derived from the same secret seed (:func:`label_dp_rng`), so
this reference given that seed flips exactly the same labels. See
``docs/privacy.md`` for the accountant.
"""

from __future__ import annotations

import math

import numpy as np

from ..._validation import Interval, StrOptions
from ...errors import DataError
from .._base import _BaseEstimator
from .binning import BinMapper
from .grower import LocalSource, Node, TreeGrower, check_monotone
from .predictor import predict_raw
from .split import SplitParams

__all__ = [
    "GBDTReference",
    "sigmoid",
    "logistic_gh",
    "quantize_gh",
    "base_score",
    "row_weights",
    "normalize_weights",
    "tree_rng",
    "sample_rows",
    "sample_features",
    "validation_split",
    "logloss",
    "EarlyStopping",
    "TREE_PARAMETER_CONSTRAINTS",
    "flip_probability",
    "label_dp_rng",
    "randomized_response",
    "categorical_mask",
]

#: Stream of the secret seed that draws the label-DP flips (the validation split uses the seed itself).
LABEL_DP_STREAM = 0x1ABE1

TREE_PARAMETER_CONSTRAINTS = {
    "n_trees": [Interval(int, 1, 10_000)],
    "max_depth": [Interval(int, 1, 16)],
    "learning_rate": [Interval(float, 0, 1, closed="right")],
    "max_bins": [Interval(int, 3, 256)],
    "reg_lambda": [Interval(float, 0, None)],
    "min_child_weight": [Interval(float, 0, None)],
    "min_split_gain": [Interval(float, 0, None)],
    "subsample": [Interval(float, 0, 1, closed="right")],
    "colsample": [Interval(float, 0, 1, closed="right")],
    "min_node_rows": [Interval(int, 1, None)],
    "class_weight": [None, StrOptions({"balanced"}), dict],
    "early_stopping_rounds": [None, Interval(int, 1, None)],
    "validation_fraction": [Interval(float, 0, 1, closed="neither")],
    "random_state": [Interval(int, 0, None)],
    "label_epsilon": [None, Interval(float, 0, None, closed="neither")],
}


def flip_probability(epsilon: float | None) -> float:
    """Randomized response's flip probability ``1 / (1 + e**epsilon)`` (0 when ``epsilon`` is None: off).

    With it, for either true label the odds of any reported label are at most
    ``e**epsilon``: each row's label is ``epsilon``-label-DP (Warner 1965;
    Ghazi et al. 2021, "Deep learning with label differential privacy").
    """
    if epsilon is None:
        return 0.0
    return 1.0 / (1.0 + math.exp(float(epsilon)))


def label_dp_rng(seed: int) -> np.random.Generator:
    """The generator of the label flips, derived from the label holder's secret ``seed``."""
    return np.random.default_rng([int(seed), LABEL_DP_STREAM])


def randomized_response(y: np.ndarray, epsilon: float | None, rng: np.random.Generator) -> np.ndarray:
    """Binary labels ``y`` with each flipped independently with probability :func:`flip_probability`.

    ``epsilon`` None returns ``y`` unchanged (and draws nothing). The labels
    are drawn once per job: every tree, histogram and stopping decision then
    uses only the noisy labels, which is post-processing and costs no further
    budget.
    """
    y = np.asarray(y)
    if epsilon is None:
        return y
    flip = rng.random(len(y)) < flip_probability(epsilon)
    return np.where(flip, 1 - y, y).astype(y.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def logistic_gh(y: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """``(g, h) = (p - y, p (1 - p))`` per row as an (n, 2) float array."""
    p = sigmoid(raw)
    return np.stack([p - y, p * (1.0 - p)], axis=1)


def quantize_gh(gh: np.ndarray, bits: int) -> np.ndarray:
    """Fixed-point ``round(gh * 2**bits)`` as int64 (|g| <= 1 and 0 <= h <= 1/4)."""
    return np.rint(np.asarray(gh, dtype=np.float64) * float(2**bits)).astype(np.int64)


def base_score(y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Initial log-odds ``log(p / (1 - p))`` of the training labels (``p`` weighted by ``w`` if given)."""
    p = float(np.clip(np.average(y, weights=w), 1e-12, 1 - 1e-12))
    return math.log(p / (1.0 - p))


def tree_rng(random_state: int, tree: int) -> np.random.Generator:
    """The generator of one tree's row and feature sampling (resume-safe)."""
    return np.random.default_rng([int(random_state), int(tree)])


def sample_rows(rng: np.random.Generator, rows: np.ndarray, subsample: float) -> np.ndarray:
    """Sorted subset of ``rows`` of size ``max(1, round(subsample * len(rows)))`` (all when 1.0)."""
    rows = np.asarray(rows, dtype=np.int64)
    if subsample >= 1.0:
        return rows
    k = max(1, int(round(subsample * len(rows))))
    return np.sort(rng.choice(rows, size=k, replace=False))


def sample_features(rng: np.random.Generator, n_features: int, colsample: float) -> np.ndarray:
    """Boolean mask over the global feature list (all True when ``colsample`` is 1.0)."""
    mask = np.zeros(n_features, dtype=bool)
    if colsample >= 1.0 or n_features == 0:
        mask[:] = True
        return mask
    k = max(1, int(round(colsample * n_features)))
    mask[rng.choice(n_features, size=k, replace=False)] = True
    return mask


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row positions: a uniformly random ``round(fraction * n)`` rows held out.

    Not stratified, on purpose: hosts see which rows are held out, and a split
    drawn per class would tell them about the labels (with the seed, a host can
    replay a stratified split against label guesses). The size depends on
    ``n`` only (at least one row on each side) and the rows on ``seed`` only,
    so the split is independent of the labels.
    """
    n = int(n)
    rng = np.random.default_rng(int(seed))
    k = min(max(int(round(fraction * n)), 1), n - 1) if n >= 2 else 0
    perm = rng.permutation(n)
    valid = np.sort(perm[:k]).astype(np.int64)
    train = np.sort(perm[k:]).astype(np.int64)
    return train, valid


def logloss(y: np.ndarray, raw: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean (``w``-weighted, if given) binary cross-entropy of log-odds ``raw``."""
    raw = np.asarray(raw, dtype=np.float64)
    return float(np.average(np.logaddexp(0.0, raw) - np.asarray(y) * raw, weights=w))


def row_weights(y: np.ndarray, sample_weight=None, class_weight=None) -> np.ndarray | None:
    """Per-row weights: ``sample_weight`` times the weight of each row's class (None: unweighted).

    ``class_weight`` is None, ``"balanced"`` (``n / (2 * n_c)`` per class ``c``,
    ``n_c`` the rows of class ``c``, as scikit-learn's) or ``{0: a, 1: b}``.
    The weights multiply each row's ``g`` and ``h``.

    Raises
    ------
    DataError
        Weights that are not finite and non-negative, of the wrong length, or summing to zero.
    """
    y = np.asarray(y)
    if sample_weight is None and class_weight is None:
        return None
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != y.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError(f"sample weights must be {len(y)} finite non-negative numbers")
    if class_weight == "balanced":
        counts = np.array([np.sum(y == 0), np.sum(y == 1)], dtype=np.float64)
        cw = len(y) / (2.0 * np.maximum(counts, 1.0))
    elif isinstance(class_weight, dict):
        keys = {int(k) if isinstance(k, (int, str)) and str(k) in ("0", "1") else k for k in class_weight}
        vals = list(class_weight.values())
        if keys != {0, 1} or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     and v >= 0 for v in vals):
            raise DataError("class_weight must be 'balanced' or {0: a, 1: b} with finite non-negative a and b")
        cw = np.array([float(class_weight.get(0, class_weight.get("0"))),
                       float(class_weight.get(1, class_weight.get("1")))])
    elif class_weight is None:
        cw = np.ones(2)
    else:
        raise DataError("class_weight must be 'balanced' or {0: a, 1: b}")
    w = w * cw[y.astype(np.int64)]
    if not w.sum() > 0:
        raise DataError("the sample weights sum to zero")
    return w


def normalize_weights(w: np.ndarray | None, params: SplitParams) -> tuple[np.ndarray | None, SplitParams]:
    """Weights divided by their maximum ``c``, and the split parameters that give the same trees.

    The fixed-point packing of the federated ``(g, h)`` holds ``|g| <= 1`` and
    ``h <= 1/4`` per row; scaling every weight by ``1 / c`` keeps weighted
    values in range. With ``G = c G'`` and ``H = c H'``, the leaf value
    ``-G / (H + lambda) = -G' / (H' + lambda / c)``, the gain scales by ``c``
    and ``H >= m  <=>  H' >= m / c``, so dividing ``reg_lambda``,
    ``min_child_weight`` and ``min_split_gain`` by ``c`` grows the same trees.
    """
    if w is None:
        return None, params
    c = float(np.max(w))
    return w / c, SplitParams(params.reg_lambda / c, params.min_child_weight / c, params.min_split_gain / c)


def categorical_mask(categorical, n_features: int) -> np.ndarray | None:
    """``categorical`` (None, a bool mask or feature indices) as a bool mask of ``n_features`` (None: none).

    Raises
    ------
    DataError
        A mask of the wrong length or an index out of range.
    """
    if categorical is None:
        return None
    arr = np.asarray(categorical)
    if arr.dtype == bool:
        if arr.shape != (n_features,):
            raise DataError(f"categorical_features must be {n_features} flags or feature indices")
        return arr if arr.any() else None
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_features):
        raise DataError(f"categorical_features must be {n_features} flags or feature indices")
    mask = np.zeros(n_features, dtype=bool)
    mask[arr.astype(np.int64)] = True
    return mask if mask.any() else None


class EarlyStopping:
    """Stop when the validation loss has not improved for ``rounds`` trees; keep the best prefix."""

    def __init__(self, rounds: int | None):
        self.rounds = rounds
        self.best_loss = math.inf
        self.best_trees = 0
        self.history: list[float] = []

    def update(self, n_trees: int, loss: float) -> bool:
        """Record the loss after ``n_trees`` trees; True when training should stop."""
        self.history.append(loss)
        if loss < self.best_loss - 1e-12:
            self.best_loss, self.best_trees = loss, n_trees
        return self.rounds is not None and n_trees - self.best_trees >= self.rounds


class GBDTReference(_BaseEstimator):
    """Binary-logistic gradient-boosted trees on one (joined) table, in plaintext.

    Parameters
    ----------
    n_trees : int, default=5
    max_depth : int, default=3
        Edges from the root to the deepest leaf (at most ``2**max_depth`` leaves).
    learning_rate : float, default=0.3
        Shrinkage applied to every leaf value.
    max_bins : int, default=32
        Codes per feature including the missing-value bin.
    reg_lambda : float, default=1.0
        L2 regularization of leaf weights.
    min_child_weight : float, default=1e-3
        Minimum hessian sum in a child.
    min_split_gain : float, default=0.0
    subsample : float, default=1.0
        Fraction of training rows drawn (without replacement) for each tree.
    colsample : float, default=1.0
        Fraction of features drawn for each tree.
    min_node_rows : int, default=1
        A node is split only when it and its sibling each hold at least this
        many rows (1: no limit beyond two rows to split). SecureBoost enforces
        a floor (``spec.MIN_NODE_ROWS``) so hosts never sum fewer rows; pass
        the federated run's value to reproduce it.
    early_stopping_rounds : int or None, default=None
        When set, hold out a random ``validation_fraction`` of the rows
        (:func:`validation_split`) and stop once the validation log-loss has
        not improved for this many trees (the best prefix of trees is kept).
    validation_fraction : float, default=0.2
    validation_seed : int or None, default=None
        Seed of the validation split; None: ``random_state``. The federated
        label holder draws it secretly and keeps it in its model part
        (``GuestModel.validation_seed``).
    monotonic_cst : array-like of int of shape (n_features,) or None, default=None
        Per feature ``+1`` (score non-decreasing in the feature), ``-1``
        (non-increasing) or 0, enforced as scikit-learn's ``monotonic_cst``.
    class_weight : None, "balanced" or dict, default=None
        Weight of each class, multiplied into ``sample_weight`` (see :func:`row_weights`).
    categorical_features : array-like of bool or int, or None, default=None
        Categorical features, as a mask or as indices: their values are
        category codes (``fedcredit.data.Table``), binned one bin per category
        and split by category subsets (see :mod:`.split`); NaN and categories
        never seen in training follow the missing branch.
    gh_bits : int or None, default=None
        Quantize ``(g, h)`` to multiples of ``2**-gh_bits`` (as the federated
        protocol does) and sum them as integers; None sums floats.
    random_state : int, default=0
        Seeds row/feature sampling (and the validation split unless ``validation_seed`` is given).
    label_epsilon : float or None, default=None
        Train on randomized-response labels (:func:`randomized_response`)
        drawn from :func:`label_dp_rng` of ``validation_seed`` (else
        ``random_state``): the flips of the federated label holder with the
        same seed. None: the true labels.

    Attributes
    ----------
    bin_mapper_ : BinMapper
    trees_ : list of list of Node
    base_score_ : float
    n_trees_ : int
    validation_loss_ : list of float
    """

    _parameter_constraints = {**TREE_PARAMETER_CONSTRAINTS, "gh_bits": [None, Interval(int, 8, 52)],
                              "validation_seed": [None, Interval(int, 0, None)],
                              "monotonic_cst": [None, list, np.ndarray, tuple],
                              "categorical_features": [None, list, np.ndarray, tuple]}
    _fitted_attr = "trees_"

    def __init__(
        self,
        *,
        n_trees: int = 5,
        max_depth: int = 3,
        learning_rate: float = 0.3,
        max_bins: int = 32,
        reg_lambda: float = 1.0,
        min_child_weight: float = 1e-3,
        min_split_gain: float = 0.0,
        subsample: float = 1.0,
        colsample: float = 1.0,
        min_node_rows: int = 1,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.2,
        validation_seed: int | None = None,
        monotonic_cst=None,
        class_weight=None,
        categorical_features=None,
        gh_bits: int | None = None,
        random_state: int = 0,
        label_epsilon: float | None = None,
    ):
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.max_bins = max_bins
        self.reg_lambda = reg_lambda
        self.min_child_weight = min_child_weight
        self.min_split_gain = min_split_gain
        self.subsample = subsample
        self.colsample = colsample
        self.min_node_rows = min_node_rows
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.validation_seed = validation_seed
        self.monotonic_cst = monotonic_cst
        self.class_weight = class_weight
        self.categorical_features = categorical_features
        self.gh_bits = gh_bits
        self.random_state = random_state
        self.label_epsilon = label_epsilon

    def fit(self, X, y, sample_weight=None) -> "GBDTReference":
        """Fit on ``X`` (n, f) with NaN for missing values and binary ``y`` (n,), optionally weighted."""
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise DataError(f"X must be (n, f) and y (n,); got {X.shape} and {y.shape}")
        if not np.isin(np.unique(y), (0, 1)).all():
            raise DataError("y must be binary 0/1")
        seed = self.random_state if self.validation_seed is None else self.validation_seed
        y = randomized_response(y, self.label_epsilon, label_dp_rng(seed))
        if self.early_stopping_rounds is not None:
            train, valid = validation_split(len(y), self.validation_fraction, seed)
        else:
            train, valid = np.arange(len(y)), np.empty(0, dtype=np.int64)
        cat = categorical_mask(self.categorical_features, X.shape[1])
        self.bin_mapper_ = BinMapper(max_bins=self.max_bins, categorical=cat).fit(X[train])
        codes = self.bin_mapper_.transform(X[train])
        cst = None if self.monotonic_cst is None else check_monotone(self.monotonic_cst, X.shape[1])
        if sample_weight is not None and np.shape(sample_weight) != y.shape:
            raise DataError(f"sample_weight must have shape {y.shape}")
        ytr = y[train].astype(np.float64)
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        w = row_weights(y[train], None if sw is None else sw[train], self.class_weight)
        w_valid = None if w is None or not len(valid) else row_weights(y[valid], None if sw is None else sw[valid], self.class_weight)
        self.base_score_ = base_score(ytr, w)
        raw = np.full(len(train), self.base_score_)
        raw_valid = np.full(len(valid), self.base_score_)
        scale = float(2**self.gh_bits) if self.gh_bits is not None else 1.0
        wn, params = normalize_weights(w, SplitParams(self.reg_lambda, self.min_child_weight, self.min_split_gain))
        stopper = EarlyStopping(self.early_stopping_rounds)
        self.trees_ = []
        for t in range(self.n_trees):
            rng = tree_rng(self.random_state, t)
            rows = sample_rows(rng, np.arange(len(train)), self.subsample)
            fmask = sample_features(rng, X.shape[1], self.colsample)
            gh = logistic_gh(ytr, raw)
            gh = gh if wn is None else gh * wn[:, None]
            gh = quantize_gh(gh, self.gh_bits) if self.gh_bits is not None else gh
            source = LocalSource("local", codes, self.bin_mapper_, gh, monotone=cst)
            nodes, _ = TreeGrower(
                sources=[source], gh=gh, rows=rows, max_depth=self.max_depth, learning_rate=self.learning_rate,
                split_params=params, scale=scale, feature_masks=[fmask], min_node_rows=self.min_node_rows,
            ).grow()
            self.trees_.append(nodes)
            raw += predict_raw([nodes], 0.0, X[train])
            if len(valid):
                raw_valid += predict_raw([nodes], 0.0, X[valid])
                if stopper.update(t + 1, logloss(y[valid], raw_valid, w_valid)):
                    break
        if len(valid):
            self.trees_ = self.trees_[: stopper.best_trees]
        self.validation_loss_ = stopper.history
        self.n_trees_ = len(self.trees_)
        return self

    def feature_importance(self, feature_names=None) -> list[dict]:
        """Split count and total gain per feature (:func:`~.importance.feature_importance`)."""
        self._check_fitted()
        from .importance import feature_importance

        return feature_importance(self.trees_, {"local": list(feature_names or [])})

    def decision_function(self, X) -> np.ndarray:
        """Raw log-odds."""
        self._check_fitted()
        return predict_raw(self.trees_, self.base_score_, X)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of class 0 and 1, shape (n, 2)."""
        p = sigmoid(self.decision_function(X))
        return np.stack([1 - p, p], axis=1)
