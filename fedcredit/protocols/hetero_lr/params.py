"""Parameters of the ``hetero_lr`` step and of :class:`VerticalLogisticRegression` (one frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._validation import Interval, Params, StrOptions
from ...errors import ConfigError
from ...models.logistic import _COMMON_CONSTRAINTS
from .spec import BACKENDS, MODES

__all__ = ["LRParams"]


@dataclass(frozen=True)
class LRParams(Params):
    """Hyperparameters of vertical LR (see :class:`VerticalLogisticRegression`)."""

    _owner = "VerticalLogisticRegression"
    _parameter_constraints = {
        "mode": [StrOptions(set(MODES))],
        "backend": [StrOptions(set(BACKENDS))],
        "features": [StrOptions({"standardized", "woe", "onehot"})],
        "weight_column": [None, str],
        "class_weight": [None, StrOptions({"balanced"}), dict],
        **_COMMON_CONSTRAINTS,
        "key_bits": [Interval(int, 2048, None)],
        "clip": [None, Interval(float, 0, None, closed="neither")],
        "min_batch_size": [None, Interval(int, 1, None)],
    }

    mode: str = "coordinated"
    backend: str = "paillier"
    features: str = "standardized"
    weight_column: str | None = None
    class_weight: object = None
    learning_rate: float = 1.0
    schedule: str = "sqrt"
    decay: float = 1.0
    alpha: float = 0.001
    batch_size: int | None = 2000
    max_epochs: int = 10
    validation_fraction: float = 0.1
    n_iter_no_change: int = 3
    tol: float = 1e-4
    random_state: int = 0
    key_bits: int = 2048
    clip: float | None = 3.0
    min_batch_size: int | None = None

    def _check(self, owner: str) -> None:
        mb, bs = self.min_batch_size, self.batch_size
        if mb is not None and bs is not None and bs < mb:
            # a party sees its own gradient Xᵀd / B per batch: with B at most its feature count it solves for
            # the batch's residuals d (and so the labels) exactly; see docs/privacy.md
            raise ConfigError(f"The 'batch_size' parameter of {owner} must be at least min_batch_size={mb}. "
                              f"Got {bs} instead.")

    @property
    def weighted(self) -> bool:
        """Rows are weighted (every party must know: the residual's fixed-point scale changes)."""
        return self.weight_column is not None or self.class_weight is not None

    def __post_init__(self) -> None:
        if self.weighted and self.backend == "ckks":
            # the guest would multiply the encrypted residual by the weights: a second multiplicative level,
            # which the key holder's level check (it decrypts only exactly one packed product) refuses
            raise ConfigError("hetero_lr: weight_column/class_weight need backend='paillier' (weighting the "
                              "encrypted residual under CKKS takes a second multiplicative level)")
