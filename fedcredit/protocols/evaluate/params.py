"""Parameters of the ``evaluate`` step (checked when the job is submitted, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._validation import Interval, Params

__all__ = ["EvaluateParams"]


@dataclass(frozen=True)
class EvaluateParams(Params):
    """``evaluate`` step parameters.

    Attributes
    ----------
    n_bins : int in [2, 100], default=10
        Score bins of the KS, lift and PSI tables.
    """

    _parameter_constraints = {"n_bins": [Interval(int, 2, 100)]}

    n_bins: int = 10
