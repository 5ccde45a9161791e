"""Scorecard points from a logistic regression on WOE features.

With ``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``
(``base_odds`` = good:bad odds at ``base_score``), a row's score is
``offset - factor * z`` where ``z = b0 + sum_j w_j WOE_j`` is the log-odds of
default. It splits into a base (``offset - factor * b0``, held by the label
holder) plus, per feature, the points of the row's bin:
``points[j][bin] = -factor * w_j * WOE_j[bin]``. Higher score = lower risk.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["scaling", "base_points", "feature_points", "write_table"]


def scaling(*, pdo: float = 20.0, base_score: float = 600.0, base_odds: float = 50.0) -> tuple[float, float]:
    """``(factor, offset)`` of the score scale."""
    if pdo <= 0 or base_odds <= 0:
        raise DataError("pdo and base_odds must be positive")
    factor = pdo / math.log(2.0)
    return factor, base_score - factor * math.log(base_odds)


def base_points(intercept: float, **scale) -> float:
    """The label holder's constant: ``offset - factor * intercept``."""
    factor, offset = scaling(**scale)
    return offset - factor * float(intercept)


def feature_points(coef: float, woe, **scale) -> np.ndarray:
    """Points of each bin of one feature: ``-factor * coef * WOE[bin]``."""
    factor, _ = scaling(**scale)
    return -factor * float(coef) * np.asarray(woe, dtype=np.float64)


def write_table(rows: list[dict], path_csv, path_md=None) -> list[Path]:
    """Write ``rows`` (feature, bin, woe, points, count) as CSV and optionally markdown."""
    out = []
    cols = ["feature", "bin", "count", "woe", "points"]
    p = Path(path_csv)
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in cols})
    out.append(p)
    if path_md is not None:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            lines.append(f"| {r['feature']} | {r['bin']} | {r['count']} | {r['woe']:.4f} | {r['points']:.1f} |")
        Path(path_md).write_text("\n".join(lines) + "\n")
        out.append(Path(path_md))
    return out
