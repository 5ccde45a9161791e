"""Fixed-point conventions and helpers shared by the hetero_lr roles."""

from __future__ import annotations

import math
import secrets

import numpy as np

from ...errors import ProtocolError
from ...models.logistic import FEATURE_FRAC_BITS, batch_plan, learning_rate_at, validation_split
from .params import LRParams

__all__ = ["LRParams", "SCORE_FRAC_BITS", "encode_scores", "feature_codes", "Plan", "masks", "unmask", "to_grad"]

#: Scores z are sent as round(z * 2**SCORE_FRAC_BITS).
SCORE_FRAC_BITS = 32
#: Row weights multiply the residual as integers round(w * 2**WEIGHT_FRAC_BITS).
WEIGHT_FRAC_BITS = 16


def encode_scores(z) -> np.ndarray:
    """Scores → int64 fixed point (2**-32)."""
    return np.round(np.asarray(z, dtype=np.float64) * float(1 << SCORE_FRAC_BITS)).astype(np.int64)


def feature_codes(X) -> np.ndarray:
    """Features → int64 codes on the 2**-FEATURE_FRAC_BITS grid (what ciphertexts are multiplied by)."""
    return np.round(np.asarray(X, dtype=np.float64) * float(1 << FEATURE_FRAC_BITS)).astype(np.int64)


class Plan:
    """Validation split, batches and learning rates, identical on every party."""

    def __init__(self, n: int, p: LRParams):
        self.p = p
        self.train, self.valid = validation_split(n, p.validation_fraction, p.random_state)

    def batches(self, epoch: int) -> list[np.ndarray]:
        plan = batch_plan(self.train.size, self.p.batch_size, epoch, self.p.random_state)
        mb = self.p.min_batch_size
        if mb is not None and len(plan) > 1 and len(plan[-1]) < mb:
            # no batch below the floor: a short last batch joins the one before it
            plan = plan[:-2] + [np.sort(np.concatenate(plan[-2:]))]
        return [self.train[b] for b in plan]

    def lr(self, epoch: int) -> float:
        return learning_rate_at(self.p.schedule, self.p.learning_rate, self.p.decay, epoch)


def masks(count: int, n: int) -> list[int]:
    """Uniform masks mod n (perfectly hide any value mod n) from ``secrets``."""
    return [secrets.randbelow(n) for _ in range(count)]


def unmask(values, ms, n: int, expected: int) -> list[int]:
    """``(v - m) mod n`` as signed ints; checks the count."""
    if len(values) != expected or any(type(v) is not int or not 0 <= v < n for v in values):
        raise ProtocolError(f"hetero_lr: expected {expected} masked values in [0, n)")
    half = n // 2
    out = []
    for v, m in zip(values, ms):
        x = (v - m) % n
        out.append(x - n if x > half else x)
    return out


def to_grad(G_ints, n_rows: int, extra_bits: int = 0) -> np.ndarray:
    """Integer ``Xqᵀ (4 d 2^F)`` sums (times ``2**extra_bits``: weighted rows) → the mean gradient (float)."""
    scale = float(1 << FEATURE_FRAC_BITS) * float(1 << (SCORE_FRAC_BITS + 2 + extra_bits)) * n_rows
    return np.array([float(g) / scale for g in G_ints], dtype=np.float64)


def loss_from_numerator(num: int, n_val: int) -> float:
    """Validation Taylor loss from ``Σ z² - 4 Σ s z`` at scale 2**(2F)."""
    return math.log(2.0) + float(num) / float(1 << (2 * SCORE_FRAC_BITS)) / (8.0 * n_val)
