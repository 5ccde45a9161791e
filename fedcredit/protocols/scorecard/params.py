"""Parameters of the ``scorecard`` step (checked when the job is submitted, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._validation import Interval, Params

__all__ = ["ScorecardParams"]


@dataclass(frozen=True)
class ScorecardParams(Params):
    """``scorecard`` step parameters (the points scale, :mod:`fedcredit.models.scorecard`).

    Attributes
    ----------
    pdo : float, default=20.0
        Points that double the odds.
    base_score : float, default=600.0
        Score at ``base_odds``.
    base_odds : float, default=50.0
    """

    _parameter_constraints = {
        "pdo": [Interval(float, 0, None, closed="neither")],
        "base_score": [float],
        "base_odds": [Interval(float, 0, None, closed="neither")],
    }

    pdo: float = 20.0
    base_score: float = 600.0
    base_odds: float = 50.0
