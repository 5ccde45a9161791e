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

__all__ = ["scaling", "base_points", "feature_points", "table_text", "write_table"]


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


def table_text(rows: list[dict]) -> tuple[str, str]:
    """``rows`` (feature, bin, woe, points, count) as CSV text and as a markdown table."""
    import io

    cols = ["feature", "bin", "count", "woe", "points"]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in cols})
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['feature']} | {r['bin']} | {r['count']} | {r['woe']:.4f} | {r['points']:.1f} |")
    return buf.getvalue(), "\n".join(lines) + "\n"


def write_table(rows: list[dict], path_csv, path_md=None) -> list[Path]:
    """Write ``rows`` (feature, bin, woe, points, count) as CSV and optionally markdown."""
    csv_text, md_text = table_text(rows)
    out = [Path(path_csv)]
    with out[0].open("w", newline="") as fh:
        fh.write(csv_text)
    if path_md is not None:
        Path(path_md).write_text(md_text)
        out.append(Path(path_md))
    return out
