"""Metrics against sklearn / hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve

from fedcredit.errors import DataError
from fedcredit.models import metrics


def _data(seed, n=500, round_to=None):
    r = np.random.default_rng(seed)
    y = r.integers(0, 2, n)
    s = r.random(n) + 0.4 * y
    if round_to is not None:
        s = np.round(s, round_to)
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("round_to", [None, 1, 2])
def test_auc_ks_match_sklearn(seed, round_to):
    y, s = _data(seed, round_to=round_to)
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = sk_roc_curve(y, s)
    assert metrics.ks(y, s) == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    assert metrics.gini(y, s) == pytest.approx(2 * roc_auc_score(y, s) - 1, abs=1e-12)


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert metrics.auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.ks(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_lift_table():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    s = np.arange(10, 0, -1, dtype=float)
    rows = metrics.lift_table(y, s, n_bins=5)
    assert [r["events"] for r in rows] == [2, 0, 1, 0, 0]
    assert rows[0]["lift"] == pytest.approx(1.0 / 0.3)
    assert rows[-1]["cum_events_share"] == pytest.approx(1.0)
    assert sum(r["count"] for r in rows) == 10


def test_psi_zero_for_same_distribution_and_grows_with_shift():
    r = np.random.default_rng(0)
    a = r.normal(size=5000)
    assert metrics.psi(a, a) == pytest.approx(0.0, abs=1e-12)
    small = metrics.psi(a, r.normal(0.1, 1, 5000))
    big = metrics.psi(a, r.normal(1.0, 1, 5000))
    assert 0 <= small < 0.1 < big


def test_psi_matches_hand_formula():
    e = np.array([1, 2, 3, 4], dtype=float)
    a = np.array([1, 1, 1, 4], dtype=float)
    # bins from quantiles of e at 0.5 -> cut 2.5 (n_bins=2): e shares (.5,.5), a shares (.75,.25)
    want = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert metrics.psi(e, a, n_bins=2) == pytest.approx(want)


@pytest.mark.parametrize(
    "y, s, match",
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "binary"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "one class"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 1, 1], [0.1, 0.2], "different lengths"),
    ],
)
def test_bad_input(y, s, match):
    with pytest.raises(DataError, match=match):
        metrics.auc(y, s)


def test_plots_written(tmp_path):
    y, s = _data(0)
    p1 = metrics.plot_roc({"train": (y, s)}, tmp_path / "roc.png")
    p2 = metrics.plot_ks(y, s, tmp_path / "ks.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
