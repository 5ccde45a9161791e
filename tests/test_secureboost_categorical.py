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
    return bank.X[rb], np.asarray(bank.y)[rb], gov.X[rg], cat, (bank, gov)


def _fit(Xb, y, Xg, cat, kw, keypair, hub=None, bank_cat=None, names=(None, None)):
    return run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xb, y, keypair=keypair, categorical_features=bank_cat,
                                                         feature_names=names[0]),
        "gov": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, guest="bank", categorical_features=cat,
                                                        feature_names=names[1]),
    }, timeout=300, hub=hub)


def _reference(kw, X, y, cat, seed=None):
    return GBDTReference(min_node_rows=spec.MIN_NODE_ROWS, gh_bits=GH_BITS, validation_seed=seed,
                         categorical_features=cat, **kw).fit(X, y)


@pytest.mark.parametrize("case", ["plain", "sampling+early_stopping", "guest categorical"])
def test_categorical_lossless_vs_reference(tables, keypair, case):
    Xb, y, Xg, cat, _ = tables
    kw = dict(n_trees=3, max_depth=3, learning_rate=0.5)
    bank_cat = None
    if case == "sampling+early_stopping":
        kw.update(subsample=0.8, colsample=0.8, random_state=3, early_stopping_rounds=2, n_trees=4)
    if case == "guest categorical":  # pay_0 (repayment status codes) declared categorical on the guest
        bank_cat = np.zeros(Xb.shape[1], bool)
        bank_cat[1] = True
        Xb = Xb.copy()
        Xb[:, 1] = Xb[:, 1] + 2  # codes must be non-negative integers (-2 .. 8 -> 0 .. 10)
    res = _fit(Xb, y, Xg, cat, kw, keypair, bank_cat=bank_cat)
    fed = res["bank"].model_
    gcat = np.r_[np.zeros(Xb.shape[1], bool) if bank_cat is None else bank_cat, cat]
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
            if a.left_bins is not None and a.party == "gov":
                n_cat += 1
                assert a.left_categories is None  # the category codes stay with the host
            if a.left_bins is not None and a.party == "bank":
                assert a.left_categories == b.left_categories and a.right_categories == b.right_categories
    assert n_cat > 0, "the categorical host features should win some splits"
    if bank_cat is not None:
        assert any(n.left_bins is not None for t in fed.trees for n in t if n.party == "bank")
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


# ---------------------------------------------------------------- the splitter and the binning
def test_prefix_of_the_gh_order_is_the_best_subset():
    """Scanning the G/(H + lambda) order finds the best of all 2**k - 2 category subsets (Fisher's theorem)."""
    import itertools

    rng = np.random.default_rng(5)
    params = SplitParams(reg_lambda=1.0, min_child_weight=0.0)
    for _ in range(30):
        k = 6
        grid = np.zeros((1, 8, 2))
        grid[0, :k, 0] = rng.normal(0, 5, k)
        grid[0, :k, 1] = rng.uniform(1, 10, k)
        total = tuple(grid[0].sum(axis=0))
        info = find_best_split(grid, np.array([k]), total, params, categorical=np.array([True]))
        best = -np.inf
        for r in range(1, k):
            for left in itertools.combinations(range(k), r):
                gl, hl = grid[0, list(left)].sum(axis=0)
                gr, hr = total[0] - gl, total[1] - hl
                best = max(best, gl**2 / (hl + 1) + gr**2 / (hr + 1) - total[0]**2 / (total[1] + 1))
        assert info is not None and info.bin == -1 and info.left_bins
        assert info.gain == pytest.approx(best, rel=1e-12)


def test_category_bins_pool_rare_categories_into_other_and_unseen_is_missing():
    col = np.r_[np.repeat([0.0, 1, 2, 3, 4], [50, 40, 30, 2, 1]), [np.nan] * 3]
    assert [b.tolist() for b in category_bins(col, 10)] == [[0], [1], [2], [3], [4]]
    assert [b.tolist() for b in category_bins(col, 3)] == [[0], [1], [2, 3, 4]]  # the 2 most frequent + "other"
    m = BinMapper(max_bins=4, categorical=np.array([True])).fit(col[:, None])
    codes = m.transform(np.array([[0.0], [3.0], [4.0], [7.0], [np.nan]]))[:, 0]
    assert codes.tolist() == [0, 2, 2, 3, 3]  # 7 was never seen: the missing bin, like NaN
    with pytest.raises(DataError, match="non-negative integer"):
        BinMapper(categorical=np.array([True])).fit(np.array([[0.5], [1.0]]))


def test_category_predicates_agree_and_send_unseen_categories_the_missing_way():
    x = np.array([0.0, 1, 2, 5, np.nan, 2.5])
    for ml in (False, True):
        one = split_decision(x, None, ml, [0.0, 2.0], [1.0])
        assert one.tolist() == [True, False, True, ml, ml, ml]
        sides = CategorySides([None, ([0.0, 2.0], [1.0])])
        at = np.ones(len(x), dtype=np.int64)
        got = sides.decide(at, x, np.array([0.5, np.nan]), np.array([False, ml]))
        assert got.tolist() == one.tolist()
    assert CategorySides([None]).decide(np.zeros(2, np.int64), np.array([0.2, 0.7]), np.array([0.5]),
                                        np.array([False])).tolist() == [True, False]


def test_monotone_constraint_on_a_categorical_feature_is_refused():
    X = np.c_[np.arange(100) % 4, np.arange(100)].astype(float)
    y = np.arange(100) % 2
    with pytest.raises(DataError, match="categorical and cannot carry a monotone"):
        GBDTReference(categorical_features=[0], monotonic_cst=[1, 0]).fit(X, y)


def test_reference_auc_matches_sklearn_hgb_with_categorical_features(tables):
    """Same data, same hyperparameters: AUC within 0.005 of HistGradientBoostingClassifier(categorical_features)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fedcredit.models.metrics import auc

    _, _, _, cat, (bank, gov) = tables
    common = np.intersect1d(bank.ids, gov.ids)  # every aligned row (~22k): AUC on 30 % of them is stable
    rb = np.searchsorted(bank.ids, common, sorter=np.argsort(bank.ids))
    rg = np.searchsorted(gov.ids, common, sorter=np.argsort(gov.ids))
    X = np.hstack([bank.X[np.argsort(bank.ids)[rb]], gov.X[np.argsort(gov.ids)[rg]]])
    y = np.asarray(bank.y)[np.argsort(bank.ids)[rb]]
    gcat = np.r_[np.zeros(bank.X.shape[1], bool), cat]
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[: int(0.7 * len(y))], perm[int(0.7 * len(y)):]
    ours = GBDTReference(n_trees=20, max_depth=3, learning_rate=0.15, max_bins=32, categorical_features=gcat,
                         min_child_weight=1e-3).fit(X[tr], y[tr])
    hgb = HistGradientBoostingClassifier(max_iter=20, max_depth=3, learning_rate=0.15, max_bins=31,
                                         categorical_features=gcat, early_stopping=False, max_leaf_nodes=None,
                                         min_samples_leaf=1, l2_regularization=1.0).fit(X[tr], y[tr])
    a, b = auc(y[te], ours.predict_proba(X[te])[:, 1]), auc(y[te], hgb.predict_proba(X[te])[:, 1])
    assert a > 0.7 and abs(a - b) < 0.005, (a, b)


# ---------------------------------------------------------------- a deviating guest
@pytest.mark.parametrize("corrupt,match", [
    ("set_on_numeric", "no feature"), ("bin_on_categorical", "malformed category set"),
    ("repeated_bin", "malformed category set"), ("bin_out_of_range", "malformed category set"),
])
def test_host_refuses_malformed_category_sets(tables, keypair, corrupt, match):
    """The host partitions rows only by a set of its own bins of a categorical feature, as the spec states."""
    from fedcredit.protocols.secureboost import guest as guest_mod

    Xb, y, Xg, cat, _ = tables
    real = guest_mod.RemoteSource.request_splits

    def evil(self, depth, splits):
        for node, _ in splits:
            if corrupt == "set_on_numeric":
                node.feature, node.bin, node.left_bins = int(np.flatnonzero(~cat)[0]), -1, [0]
            elif node.left_bins is not None:
                node.left_bins = {"bin_on_categorical": None, "repeated_bin": node.left_bins * 2,
                                  "bin_out_of_range": [200]}[corrupt]
                node.bin = 0 if corrupt == "bin_on_categorical" else -1
        real(self, depth, splits)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(guest_mod.RemoteSource, "request_splits", evil)
        with pytest.raises(ProtocolError, match=match):
            # the guest's one feature is constant: every split is the host's
            _fit(np.zeros((800, 1)), y[:800], Xg[:800], cat, dict(n_trees=1, max_depth=2), keypair)


def test_wire_carries_bin_sets_not_categories(tables, keypair):
    """What the guest learns of a categorical host feature: a flag and bin indexes, never a category code."""
    Xb, y, Xg, cat, _ = tables
    hub = MemoryHub(["bank", "gov"])
    res = _fit(Xb[:1500], y[:1500], Xg[:1500], cat, dict(n_trees=2, max_depth=3), keypair, hub=hub)
    (reply,) = [serde.decode(p) for s, r, t, p in hub.captured if t.endswith("setup-reply")]
    assert reply["categorical"].tolist() == cat.tolist()
    reqs = [serde.decode(p) for s, r, t, p in hub.captured if t.endswith("/split-req")]
    assert any(len(m["left_bins"]) for m in reqs)
    host_cat = [s for s in res["gov"].model_.splits.values() if s.left_categories is not None]
    assert host_cat
    for n in (n for t in res["bank"].model_.trees for n in t if n.party == "gov"):
        assert n.left_categories is None and n.right_categories is None and n.threshold is None


# ---------------------------------------------------------------- export of category-subset splits
@pytest.fixture(scope="module")
def merged(tables, keypair):
    """A merged model (guest and host categorical splits) and a table to score: unseen and missing categories too."""
    from fedcredit.serving.export import merge_secureboost

    Xb, y, Xg, cat, (bank, gov) = tables
    bank_cat = np.zeros(Xb.shape[1], bool)
    bank_cat[1] = True
    Xb = Xb.copy()
    Xb[:, 1] += 2
    names = (list(bank.feature_names), list(gov.feature_names))
    res = _fit(Xb, y, Xg, cat, dict(n_trees=3, max_depth=3, learning_rate=0.5), keypair, bank_cat=bank_cat,
               names=names)
    m = merge_secureboost(res["bank"].model_, {"gov": res["gov"].model_.to_dict()})
    Xs = np.hstack([Xb[:400], Xg[:400]])
    j = len(names[0]) + int(np.flatnonzero(cat)[0])
    Xs[:40, j], Xs[40:60, j], Xs[60:80, 1] = 99.0, np.nan, 50.0  # unseen, missing, unseen on the guest
    cols = {f: Xs[:, k] for k, f in enumerate(names[0] + names[1])}
    expect = predict_proba_fed(res, Xb[:400].copy(), Xs, names)
    return m, cols, expect, (res, Xs, names)


def predict_proba_fed(res, Xb, Xs, names):
    """The federation's own scores of the rows of ``Xs`` (guest columns first)."""
    nb = len(names[0])
    hub = MemoryHub(["bank", "gov"])
    out = run_local({
        "bank": lambda ch: predict_guest(ch.sub("score-x"), res["bank"].model_, Xs[:, :nb]),
        "gov": lambda ch: predict_host(ch.sub("score-x"), res["gov"].model_, Xs[:, nb:]),
    }, hub=hub, timeout=60)
    return out["bank"]


def test_merged_model_has_category_sets_and_scores_like_the_federation(merged):
    from fedcredit.serving.export import predict_merged

    m, cols, expect, _ = merged
    cat_nodes = [d for t in m["trees"] for d in t if not d["is_leaf"] and "categories" in d]
    assert cat_nodes and all("threshold" not in d for d in cat_nodes)
    assert {d["feature"].split(".")[0] for d in cat_nodes} == {"bank", "gov"}
    np.testing.assert_allclose(predict_merged(m, cols), expect, rtol=0, atol=1e-12)


def test_pmml_uses_simple_set_predicates(merged):
    import pathlib
    import xml.etree.ElementTree as ET

    xmlschema = pytest.importorskip("xmlschema")
    from fedcredit.models.export import to_pmml
    from test_export import XSD, SpecEvaluator

    m, cols, expect, _ = merged
    doc = to_pmml(m)
    path = pathlib.Path(__import__("tempfile").mkdtemp()) / "cat.pmml"
    path.write_bytes(doc)
    xmlschema.XMLSchema(str(XSD)).validate(str(path))
    root = ET.fromstring(doc)
    sets = root.findall(".//{http://www.dmg.org/PMML-4_4}SimpleSetPredicate")
    assert sets and {s.get("booleanOperator") for s in sets} == {"isIn", "isNotIn"}
    ev = SpecEvaluator(path)
    got = [ev.proba({f: float(v[r]) for f, v in cols.items()}) for r in range(len(expect))]
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


def test_onnx_expands_category_sets_to_equality_chains(merged):
    onnxruntime = pytest.importorskip("onnxruntime")
    from fedcredit.models.export import to_onnx

    m, cols, expect, _ = merged
    blob = to_onnx(m)
    sess = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    X = np.stack([cols[f] for f in m["features"]], axis=1)
    _, proba = sess.run(None, {"X": X})
    np.testing.assert_allclose(proba[:, 1], expect, rtol=0, atol=1e-6)
    import onnx

    modes = [a for n in onnx.load_from_string(blob).graph.node for a in n.attribute if a.name == "nodes_modes"]
    assert b"BRANCH_EQ" in modes[0].strings


def test_path_only_scoring_evaluates_category_sets_on_each_side(merged):
    """Scoring service path: the guest walks its own set predicates; the host answers membership locally."""
    from fedcredit.protocols.scoring.guest import Forest, TreeWalk
    from fedcredit.protocols.scoring.host import SplitTable, TreeSession

    _, _, expect, (res, Xs, names) = merged
    nb = len(names[0])
    hm = res["gov"].model_
    session = TreeSession(SplitTable(hm, {f: j for j, f in enumerate(names[1])}), Xs[:, nb:], requester="bank",
                          model_id="m")
    walk = TreeWalk(Forest(res["bank"].model_), Xs[:, :nb])
    while True:
        walk.advance()
        queries = walk.queries()
        if not queries:
            break
        walk.apply("gov", session.answer(queries["gov"]))
    np.testing.assert_allclose(walk.scores(), expect, rtol=0, atol=1e-12)


@pytest.mark.parametrize("categorical,monotone,match", [
    (np.array([True]), np.array([0, 0], np.int8), "one flag per feature"),
    (np.array([True, False]), np.array([1, 0], np.int8), "categorical feature has a monotone constraint"),
])
def test_guest_refuses_bad_categorical_flags(categorical, monotone, match):
    msg = {"n_bins_non_missing": np.array([5, 5]), "resume_trees": 0, "monotone": monotone,
           "feature_names": ["", ""], "categorical": categorical}
    with pytest.raises(ProtocolError, match=match):
        spec.check_categorical_reply(msg, "gov")
    ok = dict(msg, categorical=np.array([True, False]), monotone=np.array([0, 1], np.int8))
    assert spec.check_categorical_reply(ok, "gov").tolist() == [True, False]
