"""Plaintext reference GBDT: binning, histograms, splits, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path

from fedcredit.errors import ConfigError, NotFittedError
from fedcredit.models.tree import BinMapper, GBDTReference
from fedcredit.models.tree.histogram import as_grid, build_histogram, subtract
from fedcredit.models.tree.split import SplitParams, find_best_split


def _default_credit_joined():
    import pandas as pd

    g = pd.read_csv(data_path("default_credit", "hetero_guest.csv"))
    h = pd.read_csv(data_path("default_credit", "hetero_host.csv"))
    d = g.merge(h, on="id")
    return d.drop(columns=["id", "y"]).to_numpy(np.float64), d["y"].to_numpy()


@pytest.mark.parametrize("max_bins", [4, 16, 32, 256])
@pytest.mark.parametrize("missing", [False, True])
def test_binning_equals_sklearn(rng, max_bins, missing):
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper

    X = np.column_stack([rng.normal(size=3000), rng.integers(0, 5, 3000), np.ones(3000), rng.exponential(size=3000)])
    if missing:
        X[rng.random(X.shape) < 0.1] = np.nan
    ours = BinMapper(max_bins=max_bins).fit(X)
    ref = _BinMapper(n_bins=max_bins, subsample=None).fit(X)
    for a, b in zip(ours.bin_thresholds_, ref.bin_thresholds_):
        np.testing.assert_array_equal(a, b)
    codes = ours.transform(X)
    ref_codes = ref.transform(X)
    # sklearn puts NaN in its last bin (n_bins - 1), as we do
    np.testing.assert_array_equal(codes, ref_codes)
    assert codes.dtype == np.uint8 and codes.max() <= max_bins - 1


@pytest.mark.parametrize("bad", [2, 257, 3.5, True])
def test_binmapper_rejects_bad_max_bins(bad):
    with pytest.raises(ConfigError, match="'max_bins' parameter of BinMapper"):
        BinMapper(max_bins=bad).fit(np.zeros((3, 1)))


def test_binmapper_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        BinMapper().transform(np.zeros((3, 1)))


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_histogram_matches_direct_sums_and_subtraction(rng, dtype):
    n, f, nb = 500, 3, 8
    codes = rng.integers(0, nb, (n, f)).astype(np.uint8)
    values = (rng.integers(-1000, 1000, (n, 2))).astype(dtype)
    rows = np.sort(rng.choice(n, 300, replace=False))
    child = rows[:120]
    sib = rows[120:]
    hp = build_histogram(values, codes, rows, nb)
    hc = build_histogram(values, codes, child, nb)
    hs = build_histogram(values, codes, sib, nb)
    np.testing.assert_array_equal(subtract(hp, hc), hs)
    grid = as_grid(hp, f, nb)
    for j in range(f):
        for b in range(nb):
            np.testing.assert_array_equal(grid[j, b], values[rows][codes[rows, j] == b].sum(axis=0))


def test_histogram_same_code_path_for_ciphertexts(rng):
    from fedcredit.testing import small_keypair

    pk, sk = small_keypair(512)
    n, f, nb = 60, 2, 4
    codes = rng.integers(0, nb, (n, f)).astype(np.uint8)
    vals = rng.integers(-50, 50, n)
    rows = np.arange(0, n, 2)
    enc = build_histogram(sk.encrypt_ints(vals.tolist(), parallel=False), codes, rows, nb)
    plain = build_histogram(vals.reshape(-1, 1).astype(np.int64), codes, rows, nb)
    assert sk.decrypt_signed(enc) == plain.ravel().tolist()


def test_split_learns_missing_direction():
    # one feature, 3 non-missing bins + missing bin; missing rows look like bin 0
    grid = np.zeros((1, 4, 2))
    grid[0, 0] = (-10.0, 5.0)
    grid[0, 1] = (6.0, 5.0)
    grid[0, 2] = (6.0, 5.0)
    grid[0, 3] = (-8.0, 4.0)  # missing
    total = tuple(grid[0].sum(axis=0))
    info = find_best_split(grid, np.array([3]), total, SplitParams(reg_lambda=1.0))
    assert (info.feature, info.bin, info.missing_left) == (0, 0, True)
    assert info.left_g == pytest.approx(-18.0) and info.left_h == pytest.approx(9.0)


@pytest.mark.parametrize("mcw,expect_split", [(1.0, True), (6.0, False)])
def test_split_respects_min_child_weight(mcw, expect_split):
    grid = np.zeros((1, 3, 2))
    grid[0, 0] = (-5.0, 5.0)
    grid[0, 1] = (5.0, 5.0)
    info = find_best_split(grid, np.array([2]), (0.0, 10.0), SplitParams(min_child_weight=mcw))
    assert (info is not None) == expect_split


@pytest.mark.parametrize("n_trees", [5, 20])
def test_reference_agrees_with_sklearn_hgb(n_trees):
    """Same bins, depth, learning rate, L2 and hessian floor as HGB: test AUC within 0.002 (measured: < 1e-4)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    X, y = _default_credit_joined()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    ours = GBDTReference(n_trees=n_trees, max_depth=3, learning_rate=0.3, max_bins=32).fit(Xtr, ytr)
    hgb = HistGradientBoostingClassifier(
        max_iter=n_trees, max_depth=3, learning_rate=0.3, max_bins=31, min_samples_leaf=1, l2_regularization=1.0,
        early_stopping=False, max_leaf_nodes=None,
    ).fit(Xtr, ytr)
    a = roc_auc_score(yte, ours.predict_proba(Xte)[:, 1])
    b = roc_auc_score(yte, hgb.predict_proba(Xte)[:, 1])
    assert abs(a - b) < 0.002, (a, b)
    assert a > 0.76


def test_fixed_point_reference_close_to_float(rng):
    X = rng.normal(size=(2000, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=2000) > 0).astype(int)
    a = GBDTReference(n_trees=3).fit(X, y)
    b = GBDTReference(n_trees=3, gh_bits=32).fit(X, y)
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X), atol=1e-7)


def test_sampling_and_early_stopping_are_deterministic(rng):
    X = rng.normal(size=(1500, 6))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=1500) > 0).astype(int)
    kw = dict(n_trees=40, subsample=0.7, colsample=0.5, early_stopping_rounds=3, learning_rate=0.5, random_state=3)
    a = GBDTReference(**kw).fit(X, y)
    b = GBDTReference(**kw).fit(X, y)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    assert a.n_trees_ < 40  # stopped early
    assert len(a.validation_loss_) == a.n_trees_ + 3


@pytest.mark.parametrize("param,value", [("max_depth", 0), ("learning_rate", 0.0), ("subsample", 1.5),
                                         ("n_trees", True)])
def test_reference_param_validation(param, value):
    with pytest.raises(ConfigError, match=f"'{param}' parameter of GBDTReference"):
        GBDTReference(**{param: value}).fit(np.zeros((4, 1)), np.array([0, 1, 0, 1]))


def test_min_node_rows_splits_only_nodes_that_with_their_sibling_are_large_enough(rng):
    """Every histogram of the tree (a split node's, and its sibling's by subtraction) sums >= min_node_rows rows."""
    X = rng.normal(size=(1200, 4))
    y = (X[:, 0] + 0.3 * rng.normal(size=1200) > 1.2).astype(int)
    small = GBDTReference(n_trees=3, max_depth=6, min_node_rows=1).fit(X, y)
    big = GBDTReference(n_trees=3, max_depth=6, min_node_rows=60).fit(X, y)

    def split_nodes(trees):
        for nodes in trees:
            parent = {c: p for p in nodes if not p.is_leaf for c in (p.left, p.right)}
            for n in nodes:
                if not n.is_leaf:
                    sib = None if n.id == 0 else (lambda p: p.right if p.left == n.id else p.left)(parent[n.id])
                    yield n, (None if sib is None else nodes[sib])

    assert any(n.n_rows < 60 or (s is not None and s.n_rows < 60) for n, s in split_nodes(small.trees_))
    assert all(n.n_rows >= 60 and (s is None or s.n_rows >= 60) for n, s in split_nodes(big.trees_))
