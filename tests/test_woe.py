"""WOE/IV math and documented edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.errors import DataError
from fedcredit.models.woe import fit_bins, fit_woe, monotonic_groups, woe_iv


def test_woe_iv_hand_formula():
    woe, iv = woe_iv([10, 30], [50, 50], smoothing=0.0)
    e, ne = np.array([10, 30]) / 40, np.array([40, 20]) / 60
    np.testing.assert_allclose(woe, np.log(e / ne))
    np.testing.assert_allclose(iv, (e - ne) * np.log(e / ne))


@pytest.mark.parametrize("x, n_value_bins", [(np.full(100, 3.0), 1), (np.full(100, np.nan), 1)])
def test_constant_and_all_missing_features_have_zero_iv(x, n_value_bins):
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    b = fit_woe(x, y, min_bin_count=5)
    assert b.n_value_bins == n_value_bins and b.total_iv == pytest.approx(0.0, abs=1e-12)


def test_unseen_category():
    b = fit_woe(np.r_[np.zeros(50), np.ones(50)], np.r_[np.zeros(60), np.ones(40)].astype(int), categorical=True)
    with pytest.raises(DataError, match="not seen"):
        b.transform([0.0, 7.0])
    out = b.transform([0.0, 7.0, np.nan], unseen="missing")
    assert out[1] == out[2] == 0.0  # the missing bin had no rows: neutral WOE


@pytest.mark.parametrize("min_bin_count", [1, 20, 60])
@pytest.mark.parametrize("max_bins", [4, 10, 32])
def test_bins_respect_limits(min_bin_count, max_bins, rng):
    x = np.r_[rng.normal(size=300), np.full(10, np.nan)]
    b = fit_bins(x, max_bins=max_bins, min_bin_count=min_bin_count)
    assert b.n_value_bins <= max_bins
    assert np.all((b.counts == 0) | (b.counts >= min_bin_count)) and b.counts.sum() == x.size
    np.testing.assert_array_equal(np.bincount(b.assign(x), minlength=b.n_bins), b.counts)


def test_monotonic_groups_give_monotonic_rates(rng):
    x = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-(x**2 - 1 + x)))).astype(int)
    b = fit_woe(x, y, method="monotonic", max_bins=16)
    ev = np.bincount(b.assign(x), weights=y, minlength=b.n_bins)[:-1]
    rate = ev / b.counts[:-1]
    assert np.all(np.diff(rate) >= 0) or np.all(np.diff(rate) <= 0)
    assert monotonic_groups([1, 2, 3, 0], [10, 10, 10, 0]) == [[0], [1], [2]]


def test_non_binary_label():
    with pytest.raises(DataError, match="binary"):
        fit_woe(np.arange(4.0), [0, 1, 2, 1])
