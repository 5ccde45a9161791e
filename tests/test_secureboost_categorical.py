"""SecureBoost with native categorical splits (issue #14, item 3).

The tables are ``credit3_categorical`` read from raw CSVs with text
categories (``gov``'s ``sex``, ``education``, ``marriage``) and a text label:
the federated trees equal the plaintext reference with the same categorical
handling, bit for bit; scoring and export evaluate the category-subset
predicates; the reference is within a stated AUC tolerance of scikit-learn's
``HistGradientBoostingClassifier(categorical_features=...)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.data import load_table
from fedcredit.datasets import write_csv
from fedcredit.errors import DataError, ProtocolError
from fedcredit.models.tree import GBDTReference
from fedcredit.models.tree.binning import BinMapper, category_bins
from fedcredit.models.tree.predictor import CategorySides, split_decision
from fedcredit.models.tree.split import SplitParams, find_best_split
from fedcredit.protocols.secureboost import VerticalSecureBoost, predict_guest, predict_host, spec
from fedcredit.testing import small_keypair
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

GH_BITS = spec.GH_BITS


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """bank (label) and gov (text categories) of credit3_categorical, aligned on their common ids."""
    d = tmp_path_factory.mktemp("cat")
    paths = write_csv(d, ["credit3_categorical"])["credit3_categorical"]
    bank = load_table(paths["bank"], party="bank", label_column="default_next_month", pos_label="default")
    gov = load_table(paths["gov"], party="gov")
    common = np.intersect1d(bank.ids, gov.ids)[:2500]

    def rows(t):
        pos = {i: k for k, i in enumerate(t.ids)}
        return np.array([pos[i] for i in common])

    rb, rg = rows(bank), rows(gov)
    cat = np.array([gov.is_categorical(c) for c in gov.columns])
    assert cat.sum() == 3 and {gov.columns[j] for j in np.flatnonzero(cat)} == {"sex", "education", "marriage"}
    return bank.X[rb], np.asarray(bank.y)[rb], gov.X[rg], cat, gov


def _fit(Xb, y, Xg, cat, kw, keypair, hub=None):
    return run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xb, y, keypair=keypair),
        "gov": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, guest="bank", categorical_features=cat),
    }, timeout=300, hub=hub)


def _reference(kw, X, y, cat, seed=None):
    return GBDTReference(min_node_rows=spec.MIN_NODE_ROWS, gh_bits=GH_BITS, validation_seed=seed,
                         categorical_features=cat, **kw).fit(X, y)


@pytest.mark.parametrize("case", ["plain", "sampling+early_stopping"])
def test_categorical_lossless_vs_reference(tables, keypair, case):
    Xb, y, Xg, cat, _ = tables
    kw = dict(n_trees=3, max_depth=3, learning_rate=0.5)
    if case != "plain":
        kw.update(subsample=0.8, colsample=0.8, random_state=3, early_stopping_rounds=2, n_trees=4)
    res = _fit(Xb, y, Xg, cat, kw, keypair)
    fed = res["bank"].model_
    gcat = np.r_[np.zeros(Xb.shape[1], bool), cat]
    ref = _reference(kw, np.hstack([Xb, Xg]), y, gcat, fed.validation_seed)
    assert len(fed.trees) == len(ref.trees_)
    n_cat = 0
    for a_nodes, b_nodes in zip(fed.trees, ref.trees_):
        assert len(a_nodes) == len(b_nodes)
        for a, b in zip(a_nodes, b_nodes):
            assert a.is_leaf == b.is_leaf and a.value == b.value
            if a.is_leaf:
                continue
            off = 0 if a.party == "bank" else Xb.shape[1]
            assert (off + a.feature, a.bin, a.left_bins, a.missing_left, a.left, a.right) == (
                b.feature, b.bin, b.left_bins, b.missing_left, b.left, b.right)
            if a.left_bins is not None:
                n_cat += 1
                assert a.party == "gov" and a.left_categories is None  # the category codes stay with the host
    assert n_cat > 0, "the categorical host features should win some splits"
    host_cat = [s for s in res["gov"].model_.splits.values() if s.left_categories is not None]
    assert host_cat and all(s.threshold is None and s.right_categories for s in host_cat)
    # federated scoring equals the reference, also with a category never seen in training and missing values
    Xs = Xg[:300].copy()
    j = int(np.flatnonzero(cat)[0])
    Xs[:50, j] = 99.0  # unseen category: the missing branch
    Xs[50:80, j] = np.nan
    hub = MemoryHub(["bank", "gov"])
    out = run_local({
        "bank": lambda ch: predict_guest(ch.sub("score-1"), fed, Xb[:300]),
        "gov": lambda ch: predict_host(ch.sub("score-1"), res["gov"].model_, Xs),
    }, hub=hub, timeout=60)
    Xr = np.hstack([Xb[:300], Xs])
    np.testing.assert_allclose(out["bank"], ref.predict_proba(Xr)[:, 1], rtol=0, atol=1e-12)
    Xm = Xr.copy()
    Xm[:50, Xb.shape[1] + j] = np.nan  # unseen == missing
    np.testing.assert_array_equal(ref.predict_proba(Xr), ref.predict_proba(Xm))
