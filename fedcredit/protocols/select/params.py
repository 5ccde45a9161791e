"""Parameters of the ``select`` step (checked when the job is submitted, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._validation import Interval, Params

__all__ = ["SelectParams"]


@dataclass(frozen=True)
class SelectParams(Params):
    """``select`` step parameters.

    Attributes
    ----------
    iv_threshold : float, default=0.02
        Keep features with an IV at least this.
    top_k : int or None, default=None
        Then keep only the ``top_k`` largest IVs (ties by name); None keeps all.
    """

    _parameter_constraints = {"iv_threshold": [Interval(float, 0, None)], "top_k": [None, Interval(int, 1, None)]}

    iv_threshold: float = 0.02
    top_k: int | None = None
