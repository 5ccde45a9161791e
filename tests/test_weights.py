"""Sample and class weights: SecureBoost, WOE binning and hetero LR, each lossless against its reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path

from fedcredit.data import Table
from fedcredit.errors import ConfigError, DataError
from fedcredit.models.tree import GBDTReference
from fedcredit.models.tree.gbdt import row_weights
from fedcredit.models.woe import fit_woe
from fedcredit.protocols.binning import BinningParams, run_guest, run_host
from fedcredit.protocols.secureboost import VerticalSecureBoost, predict_guest, predict_host, spec
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import MemoryHub, run_local


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _default_credit(n=1500):
    import pandas as pd

    g = pd.read_csv(data_path("default_credit", "hetero_guest.csv")).iloc[:n]
    h = pd.read_csv(data_path("default_credit", "hetero_host.csv")).set_index("id").loc[g["id"]].reset_index()
    return g.drop(columns=["id", "y"]).to_numpy(np.float64), h.drop(columns=["id"]).to_numpy(np.float64), g["y"].to_numpy()


def test_row_weights():
    y = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(row_weights(y, None, "balanced"), [4 / 6, 4 / 6, 4 / 6, 2.0])
    np.testing.assert_allclose(row_weights(y, np.array([1, 2, 1, 1.0]), {0: 1, 1: 5}), [1, 2, 1, 5])
    np.testing.assert_allclose(row_weights(y, None, {"0": 1, "1": 2.5}), [1, 1, 1, 2.5])
    assert row_weights(y) is None
    for bad in ({0: 1}, {0: 1, 1: -1}, "heavy"):
        with pytest.raises(DataError, match="class_weight"):
            row_weights(y, None, bad)
    with pytest.raises(DataError, match="non-negative"):
        row_weights(y, np.array([1, -1, 1, 1.0]))


def test_reference_weights_match_sklearn():
    """Weighted float reference vs HistGradientBoostingClassifier(sample_weight=..., class_weight=...)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fedcredit.models.tree.binning import BinMapper

    Xg, Xh, y = _default_credit(3000)
    # scikit-learn >= 1.6 bins on weighted quantiles; ours (and the hosts', who see no weight) are row quantiles.
    # Pre-binned codes (at most 31 values per feature) give both the same bins, so the trees must agree.
    X = BinMapper(max_bins=32).fit(np.hstack([Xg, Xh])).transform(np.hstack([Xg, Xh])).astype(np.float64)
    sw = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    ref = GBDTReference(n_trees=5, max_depth=3, class_weight="balanced").fit(X, y, sample_weight=sw)
    hgb = HistGradientBoostingClassifier(max_iter=5, max_depth=3, learning_rate=0.3, max_bins=31, min_samples_leaf=1,
                                         l2_regularization=1.0, early_stopping=False, class_weight="balanced",
                                         ).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ref.decision_function(X), hgb.decision_function(X), atol=1e-6)  # float32 (g, h)
    plain = GBDTReference(n_trees=5, max_depth=3).fit(X, y)
    assert np.abs(plain.decision_function(X) - ref.decision_function(X)).max() > 0.1


@pytest.mark.parametrize("case", ["sample_weight", "class_weight", "both+early_stopping"])
def test_secureboost_weighted_lossless_vs_reference(keypair, case):
    Xg, Xh, y = _default_credit(1500)
    kw = dict(n_trees=3, max_depth=3)
    sw = None
    if case != "class_weight":
        sw = np.random.default_rng(1).uniform(0.0, 4.0, len(y))
    if case != "sample_weight":
        kw["class_weight"] = {0: 1.0, 1: 3.5} if case == "class_weight" else "balanced"
    if case.endswith("early_stopping"):
        kw.update(n_trees=5, early_stopping_rounds=1, learning_rate=1.0)
    res = run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair, sample_weight=sw),
        "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank"),
    }, timeout=300)
    fed = res["bank"].model_
    X = np.hstack([Xg, Xh])
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS,
                        validation_seed=fed.validation_seed).fit(X, y, sample_weight=sw)
    assert fed.base_score == ref.base_score_
    assert len(fed.trees) == len(ref.trees_)
    for a_nodes, b_nodes in zip(fed.trees, ref.trees_):
        assert [(n.is_leaf, n.value, n.bin) for n in a_nodes] == [(n.is_leaf, n.value, n.bin) for n in b_nodes]
    unweighted = GBDTReference(n_trees=3, max_depth=3, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(X, y)
    assert fed.trees[0][0].value != unweighted.trees_[0][0].value  # the weights reached the trees
    assert res["bank"].result_["weighted"] is True
    hub = MemoryHub(["bank", "host"])
    out = run_local({"bank": lambda ch: predict_guest(ch.sub("s"), fed, Xg[:200]),
                     "host": lambda ch: predict_host(ch.sub("s"), res["host"].model_, Xh[:200])}, hub=hub, timeout=60)
    np.testing.assert_allclose(out["bank"], ref.predict_proba(X[:200])[:, 1], atol=1e-12)


def test_weights_are_normalized_not_sent(keypair):
    """Weights above 1 keep (g, h) within the packing (scaled by 1/max w with lambda etc. scaled alike); the host
    receives no weight: its messages are those of an unweighted run with the same shapes."""
    Xg, Xh, y = _default_credit(600)
    sw = np.full(len(y), 1000.0)  # w * g would overflow the g slot without the scaling
    hub = MemoryHub(["bank", "host"])
    res = run_local({
        "bank": lambda ch: VerticalSecureBoost(n_trees=2, max_depth=2).fit(ch, Xg, y, keypair=keypair,
                                                                         sample_weight=sw),
        "host": lambda ch: VerticalSecureBoost(n_trees=2, max_depth=2).fit(ch, Xh, guest="bank"),
    }, hub=hub, timeout=120)
    ref = GBDTReference(n_trees=2, max_depth=2, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(
        np.hstack([Xg, Xh]), y, sample_weight=sw)
    assert [n.value for n in res["bank"].model_.trees[1]] == [n.value for n in ref.trees_[1]]
    from fedcredit.transport import serde

    keys = {k for s, r, t, p in hub.captured if r == "host" for k in serde.decode(p)}
    assert not any("weight" in k for k in keys)


def _tables(seed=0, n=600):
    r = np.random.default_rng(seed)
    ids = [f"id{i}" for i in range(n)]
    xg = r.normal(size=(n, 2))
    xh = np.c_[r.normal(size=n), r.integers(0, 5, n).astype(float), r.exponential(size=n)]
    xh[r.random(n) < 0.2, 0] = np.nan
    z = xg[:, 0] + 0.8 * np.nan_to_num(xh[:, 0]) + 0.3 * xh[:, 1]
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    sw = np.round(r.uniform(0.1, 3.0, n) * 64) / 64  # on the 2**-16 grid: the federated sums are exact
    g = Table.from_arrays("bank", ids, np.c_[xg, sw], ["a", "b", "w"], y=y)
    h = Table.from_arrays("gov", ids, xh, ["c", "cat", "e"])
    return g, h, y, sw


@pytest.mark.parametrize("method", ["quantile", "monotonic"])
@pytest.mark.parametrize("class_weight", [None, "balanced", {0: 1, 1: 2.5}])
def test_binning_weighted_woe_equals_centralized(method, class_weight):
    from fedcredit.protocols.binning import run as binning_run
    from fedcredit.protocols.context import StepContext
    import fedcredit.protocols.binning.guest as bguest

    g, h, y, sw = _tables()
    kp = small_keypair(512)
    params = {"method": method, "max_bins": 8, "min_bin_count": 40, "categorical": ["cat"], "weight_column": "w",
              "class_weight": class_weight}
    roles = {"bank": "guest", "gov": "host"}
    tables = {"bank": g, "gov": h}
    real = bguest.generate_keypair
    bguest.generate_keypair = lambda he, bits: kp
    try:
        states = {"bank": {}, "gov": {}}
        run_local({p: (lambda ch, p=p: binning_run(StepContext(
            job_id="j", step="bin", kind="binning", party=p, roles=roles, params=params, channel=ch,
            data=tables[p], state=states[p]))) for p in roles}, timeout=60)
    finally:
        bguest.generate_keypair = real
    from fedcredit.protocols.binning.guest import weight_codes

    w = weight_codes(row_weights(y, sw, class_weight)) / 2.0**16  # the weights as the guest encrypts them
    assert set(states["bank"]["binning"]["bins"]) == {"bank.a", "bank.b"}  # the weight column is not binned
    for table, bins in ((g, states["bank"]["binning"]["bins"]), (h, states["gov"]["binning"]["bins"])):
        for j, name in enumerate(table.feature_names):
            if name == "bank.w":
                continue
            ref = fit_woe(table.X[:, j], y, name=name, method=method, max_bins=8, categorical=name.endswith(".cat"),
                          min_bin_count=40, sample_weight=w)
            got = bins[name]
            np.testing.assert_array_equal(got.counts, ref.counts)
            np.testing.assert_allclose(got.woe, ref.woe, rtol=0, atol=1e-9)
            np.testing.assert_allclose(got.iv, ref.iv, rtol=0, atol=1e-9)
    # weights change the WOE (else the test proves nothing)
    plain = fit_woe(h.X[:, 0], y, max_bins=8, min_bin_count=40)
    weighted = fit_woe(h.X[:, 0], y, max_bins=8, min_bin_count=40, sample_weight=w)
    assert np.abs(plain.woe - weighted.woe).max() > 1e-3


def test_binning_weighted_sends_only_ciphertexts():
    g, h, y, sw = _tables()
    params = BinningParams(max_bins=8, min_bin_count=40, weight_column="w")
    hub = MemoryHub(["bank", "gov"])
    gw = g.select(["a", "b"])
    run_local({"bank": lambda ch: run_guest(ch, ["gov"], gw, params, keypair=small_keypair(512), sample_weight=sw),
               "gov": lambda ch: run_host(ch, "bank", h, params)}, hub=hub, timeout=60)
    from fedcredit.crypto.blob import CipherBlob
    from fedcredit.transport import serde

    (labels,) = [serde.decode(p) for s, r, t, p in hub.captured if t.endswith("labels")]
    assert isinstance(labels["labels"], CipherBlob) and isinstance(labels["weights"], CipherBlob)
    raw = b"".join(p for s, r, t, p in hub.captured if r == "gov")
    assert sw.tobytes() not in raw and np.rint(sw * 2**16).astype(np.int64).tobytes() not in raw


def _lr_data(n=300, seed=0):
    r = np.random.default_rng(seed)
    Xg, Xh1, Xh2 = r.normal(size=(n, 2)), r.normal(size=(n, 2)), r.normal(size=(n, 1))
    z = Xg @ [1, -0.5] + Xh1 @ [0.7, 0.2] + Xh2 @ [0.4] - 1.0
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return Xg, {"h1": Xh1, "h2": Xh2}, y


@pytest.mark.parametrize("mode, class_weight", [("coordinated", "balanced"), ("coordinated", {0: 1.0, 1: 4.0}),
                                               ("two_party", "balanced"), ("two_party", {0: 1.0, 1: 4.0})])
def test_hetero_lr_weighted_equals_centralized(mode, class_weight):
    from fedcredit.models.logistic import LogisticRegressionGD
    from fedcredit.protocols.hetero_lr import LRParams, run_arbiter, run_guest, run_host

    Xg, Xh, y = _lr_data()
    sw = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    kw = dict(batch_size=100, max_epochs=4, learning_rate=0.5, validation_fraction=0.2, alpha=0.01)
    p = LRParams(mode=mode, weight_column="w", class_weight=class_weight, **kw)
    hosts = ["h1", "h2"] if mode == "coordinated" else ["h1"]
    arb = "a" if mode == "coordinated" else None
    roles = {"g": lambda ch: run_guest(ch, Xg, y, p, hosts=hosts, arbiter=arb, sample_weight=sw,
                                       keypair=small_keypair(512, index=0))}
    if arb:
        roles["a"] = lambda ch: run_arbiter(ch, len(y), p, guest="g", hosts=hosts, keypair=small_keypair(512))
    for h in hosts:
        roles[h] = (lambda h: lambda ch: run_host(ch, Xh[h], p, guest="g", arbiter=arb,
                                                 keypair=small_keypair(512, index=1)))(h)
    hub = MemoryHub(list(roles))
    out = run_local(roles, hub=hub, timeout=120)
    q = np.rint(row_weights(y, sw, class_weight) * 2**16) / 2**16  # the weights as the guest applies them
    X = np.hstack([Xg] + [Xh[h] for h in hosts])
    ref = LogisticRegressionGD(**kw).fit(X, y, sample_weight=q)
    fed = np.concatenate([out["g"]["coef"]] + [out[h]["coef"] for h in hosts])
    np.testing.assert_allclose(fed, ref.coef_, rtol=0, atol=1e-9)
    assert out["g"]["intercept"] == pytest.approx(ref.intercept_, abs=1e-9)
    plain = LogisticRegressionGD(**kw).fit(X, y)
    assert abs(plain.intercept_ - ref.intercept_) > 0.05  # the weights matter
    # no weight crosses in the clear: hosts receive only ciphertexts, public keys, masked sums and decisions
    raw = b"".join(pl for s, r, t, pl in hub.captured if r in hosts)
    assert np.rint(q * 2**16).astype(np.int64).tobytes() not in raw and sw.tobytes() not in raw


@pytest.mark.parametrize("params, match", [
    ({"backend": "ckks", "weight_column": "w"}, "backend='paillier'"),
    ({"backend": "ckks", "mode": "two_party", "class_weight": "balanced"}, "backend='paillier'"),
])
def test_hetero_lr_refuses_weights_where_they_do_not_fit(params, match):
    from fedcredit.protocols.hetero_lr import LRParams

    with pytest.raises(ConfigError, match=match):
        LRParams.from_dict(params, "step 'lr' (hetero_lr)")


def test_hetero_lr_sample_weight_needs_every_party_told():
    from fedcredit.protocols.hetero_lr import LRParams, run_guest

    Xg, _, y = _lr_data()
    with pytest.raises(DataError, match="weight_column or class_weight"):
        run_guest(None, Xg, y, LRParams(), hosts=["h1"], arbiter="a", sample_weight=np.ones(len(y)))
