"""A small numpy multilayer perceptron for binary classification, as one flat parameter vector.

Party-agnostic math for horizontal (FedAvg) training: a model is a flat
``float64`` vector so that averaging, secure aggregation and CKKS encryption
see one array. ``hidden=()`` gives plain logistic regression
(``sigmoid(X @ w + b)``); ``hidden=(16,)`` one tanh hidden layer.

Training is minibatch SGD on the mean log loss plus ``l2 / 2 * ||W||^2``
(weights only, not biases), with the row order drawn from ``random_state``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["MLPShape", "init_params", "predict_proba", "log_loss", "loss_and_grad", "sgd_epochs"]

_EPS = 1e-12


class MLPShape:
    """Layer sizes of an MLP and how they map onto a flat parameter vector.

    Parameters
    ----------
    n_features : int
    hidden : sequence of int, default=()
        Hidden layer widths; empty for logistic regression.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = ()):
        if n_features < 1:
            raise ConfigError(f"n_features must be >= 1. Got {n_features} instead.")
        if any(int(h) < 1 for h in hidden):
            raise ConfigError(f"hidden layer widths must be >= 1. Got {tuple(hidden)} instead.")
        self.n_features = int(n_features)
        self.hidden = tuple(int(h) for h in hidden)
        sizes = (self.n_features, *self.hidden, 1)
        self.layers = list(zip(sizes[:-1], sizes[1:]))
        self.size = sum(a * b + b for a, b in self.layers)

    def unpack(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views ``[(W, b), ...]`` into ``theta``."""
        if theta.shape != (self.size,):
            raise ConfigError(f"parameter vector must have shape ({self.size},). Got {theta.shape} instead.")
        out, i = [], 0
        for a, b in self.layers:
            W = theta[i:i + a * b].reshape(a, b)
            i += a * b
            out.append((W, theta[i:i + b]))
            i += b
        return out

    def weight_mask(self) -> np.ndarray:
        """1 where ``theta`` holds a weight (penalized by L2), 0 for biases."""
        m = np.zeros(self.size)
        i = 0
        for a, b in self.layers:
            m[i:i + a * b] = 1.0
            i += a * b + b
        return m

    def __repr__(self) -> str:
        return f"MLPShape(n_features={self.n_features}, hidden={self.hidden})"


def init_params(shape: MLPShape, random_state: int | None = 0) -> np.ndarray:
    """Initial parameters: zeros for logistic regression, Glorot-uniform weights otherwise."""
    theta = np.zeros(shape.size)
    if not shape.hidden:
        return theta
    rng = np.random.default_rng(random_state)
    for W, _ in shape.unpack(theta):
        lim = np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
        W[...] = rng.uniform(-lim, lim, size=W.shape)
    return theta


def _forward(shape: MLPShape, theta: np.ndarray, X: np.ndarray):
    acts = [X]
    layers = shape.unpack(theta)
    h = X
    for W, b in layers[:-1]:
        h = np.tanh(h @ W + b)
        acts.append(h)
    W, b = layers[-1]
    z = (h @ W + b)[:, 0]
    return acts, z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def predict_proba(shape: MLPShape, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P(y = 1) for each row of ``X`` (missing values read as 0)."""
    X = _clean(X)
    return _sigmoid(_forward(shape, theta, X)[1])


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def loss_and_grad(shape: MLPShape, theta: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float = 0.0):
    """Mean log loss + ``l2/2 ||W||^2`` and its gradient with respect to ``theta``."""
    acts, z = _forward(shape, theta, X)
    p = _sigmoid(z)
    n = X.shape[0]
    mask = shape.weight_mask()
    loss = log_loss(y, p) + 0.5 * l2 * float(np.sum((theta * mask) ** 2))
    grad = np.zeros_like(theta)
    gl = shape.unpack(grad)
    layers = shape.unpack(theta)
    delta = ((p - y) / n)[:, None]
    for k in range(len(layers) - 1, -1, -1):
        gW, gb = gl[k]
        gW[...] = acts[k].T @ delta
        gb[...] = delta.sum(axis=0)
        if k:
            delta = (delta @ layers[k][0].T) * (1.0 - acts[k] ** 2)
    grad += l2 * theta * mask
    return loss, grad


def sgd_epochs(
    shape: MLPShape,
    theta: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 1,
    learning_rate: float = 0.1,
    batch_size: int = 64,
    l2: float = 0.0,
    random_state: int | None = 0,
) -> np.ndarray:
    """Run minibatch SGD from ``theta`` for ``epochs`` passes; returns new parameters.

    Parameters
    ----------
    shape : MLPShape
    theta : ndarray of shape (shape.size,)
        Starting point (not modified).
    X : ndarray of shape (n, f)
    y : ndarray of shape (n,), values in {0, 1}
    epochs, learning_rate, batch_size, l2 : see FedAvg parameters.
    random_state : int or None
        Seeds the row order of every epoch.
    """
    X = _clean(X)
    y = np.asarray(y, dtype=np.float64)
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise DataError(f"need matching non-empty X and y, got {X.shape[0]} and {y.shape[0]} rows")
    if X.shape[1] != shape.n_features:
        raise DataError(f"model expects {shape.n_features} features, the table has {X.shape[1]}")
    rng = np.random.default_rng(random_state)
    theta = np.array(theta, dtype=np.float64, copy=True)
    n = X.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            _, g = loss_and_grad(shape, theta, X[idx], y[idx], l2)
            theta -= learning_rate * g
    return theta


def _clean(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if np.isnan(X).any():
        X = np.nan_to_num(X, nan=0.0)
    return X
