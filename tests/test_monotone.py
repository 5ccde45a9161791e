"""Monotone constraints in the shared tree grower (sklearn's ``monotonic_cst``) and in federated SecureBoost."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path

from fedcredit.artifacts import FileArtifacts
from fedcredit.errors import ConfigError, DataError, ProtocolError
from fedcredit.models.tree import GBDTReference
from fedcredit.protocols.secureboost import VerticalSecureBoost, monotone_array, predict_guest, predict_host, spec
from fedcredit.protocols.secureboost.model import GuestModel
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import MemoryHub, run_local


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _credit3(n=3000):
    import pandas as pd

    bank = pd.read_csv(data_path("credit3", "bank.csv"))
    chain = pd.read_csv(data_path("credit3", "chain.csv"))
    d = bank.merge(chain, on="id").sort_values("id").iloc[:n]
    return (d[bank.columns[2:]].to_numpy(np.float64), d[chain.columns[1:]].to_numpy(np.float64),
            d["default_next_month"].to_numpy(), list(bank.columns[2:]), list(chain.columns[1:]))


def _is_monotone(score_fn, X, j, sign, grid):
    prev = None
    for v in grid:
        Z = X.copy()
        Z[:, j] = v
        s = score_fn(Z)
        if prev is not None and np.any(sign * (s - prev) < -1e-12):
            return False
        prev = s
    return True


def _grid(col):
    return np.unique(np.r_[np.nanquantile(col, np.linspace(0, 1, 25)), np.nanmin(col) - 1, np.nanmax(col) + 1])


@pytest.mark.parametrize("cst_of", [
    lambda f: [0, 1, 1, 1, 1, 1, 1] + [0] * (f - 7),
    lambda f: [0, 1, 0, -1, 0, 0, 1] + [(-1) ** j * (j % 3 == 0) for j in range(f - 7)],
])
def test_reference_equals_sklearn_monotonic_cst(cst_of):
    """Same trees as HistGradientBoostingClassifier(monotonic_cst=...): predictions agree to float rounding."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    Xg, Xh, y, _, _ = _credit3(4000)
    X = np.hstack([Xg, Xh])
    cst = cst_of(X.shape[1])
    ref = GBDTReference(n_trees=6, max_depth=3, learning_rate=0.3, max_bins=32, monotonic_cst=cst).fit(X, y)
    hgb = HistGradientBoostingClassifier(max_iter=6, max_depth=3, learning_rate=0.3, max_bins=31, min_samples_leaf=1,
                                         l2_regularization=1.0, early_stopping=False, monotonic_cst=cst).fit(X, y)
    np.testing.assert_allclose(ref.decision_function(X), hgb.decision_function(X), atol=1e-6)
    free = GBDTReference(n_trees=6, max_depth=3).fit(X, y)
    assert not np.allclose(free.decision_function(X), ref.decision_function(X)), "the constraints should bind"
    for j, s in enumerate(cst):
        if s:
            assert _is_monotone(ref.decision_function, X[:200], j, s, _grid(X[:, j])), j


def test_unconstrained_trees_unchanged_by_zero_constraints():
    Xg, Xh, y, _, _ = _credit3(1500)
    X = np.hstack([Xg, Xh])
    a = GBDTReference(n_trees=3, gh_bits=32).fit(X, y)
    b = GBDTReference(n_trees=3, gh_bits=32, monotonic_cst=[0] * X.shape[1]).fit(X, y)
    assert [[n.to_dict() for n in t] for t in a.trees_] == [[n.to_dict() for n in t] for t in b.trees_]


def _fit(Xg, Xh, y, kw, keypair, guest_cst=None, host_cst=None, names=(None, None)):
    return run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair, monotonic_cst=guest_cst,
                                                         feature_names=names[0]),
        "chain": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank", monotonic_cst=host_cst,
                                                          feature_names=names[1]),
    }, timeout=300)


def test_federated_monotone_lossless_and_monotone_over_a_grid(keypair):
    """Guest and host constraints: the reference's trees exactly; the federated score is monotone in each."""
    Xg, Xh, y, gnames, hnames = _credit3(2500)
    gcst = {"pay_0": 1, "pay_2": 1, "limit_bal": -1}
    hcst = {"bill_amt1": -1, "pay_amt1": -1}
    kw = dict(n_trees=4, max_depth=3, subsample=0.9, random_state=3)
    res = _fit(Xg, Xh, y, kw, keypair, gcst, hcst, (gnames, hnames))
    fed = res["bank"].model_
    g_arr, h_arr = monotone_array(gcst, gnames), monotone_array(hcst, hnames)
    X = np.hstack([Xg, Xh])
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS,
                        monotonic_cst=np.r_[g_arr, h_arr]).fit(X, y)
    off = {"bank": 0, "chain": Xg.shape[1]}
    assert len(fed.trees) == len(ref.trees_)
    for a_nodes, b_nodes in zip(fed.trees, ref.trees_):
        assert len(a_nodes) == len(b_nodes)
        for a, b in zip(a_nodes, b_nodes):
            assert a.is_leaf == b.is_leaf and a.value == b.value
            if not a.is_leaf:
                assert (off[a.party] + a.feature, a.bin, a.missing_left) == (b.feature, b.bin, b.missing_left)
    assert res["bank"].result_["monotone"] == {"guest": 3, "chain": 2}
    # the constraints change the model (else the test proves nothing)
    free = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(X, y)
    assert any(len(a) != len(b) or any(x.value != z.value for x, z in zip(a, b)) for a, b in zip(free.trees_, ref.trees_))

    # the federated score over a grid of each constrained feature (guest's and host's), other features fixed
    base = slice(0, 60)
    hub = MemoryHub(["bank", "chain"])
    k = [0]

    def federated(Zg, Zh):
        k[0] += 1
        sub = f"grid-{k[0]}"
        out = run_local({
            "bank": lambda ch: predict_guest(ch.sub(sub), fed, Zg, raw=True),
            "chain": lambda ch: predict_host(ch.sub(sub), res["chain"].model_, Zh),
        }, hub=hub, timeout=60)
        return out["bank"]

    for owner, arr in (("bank", g_arr), ("chain", h_arr)):
        for j in np.flatnonzero(arr):
            grid = _grid((Xg if owner == "bank" else Xh)[:, j])
            rows = np.repeat(np.arange(base.stop), len(grid))
            Zg, Zh = Xg[rows].copy(), Xh[rows].copy()
            (Zg if owner == "bank" else Zh)[:, j] = np.tile(grid, base.stop)
            s = federated(Zg, Zh).reshape(base.stop, len(grid))
            assert np.all(arr[j] * np.diff(s, axis=1) >= -1e-12), (owner, j)
            np.testing.assert_allclose(s.ravel(), ref.decision_function(np.hstack([Zg, Zh])), atol=1e-12)


def test_host_sends_only_signs(keypair):
    """SETUP_REPLY carries the host's signs, not its feature names (unless published)."""
    from fedcredit.transport import serde

    Xg, Xh, y, _, hnames = _credit3(600)
    hub = MemoryHub(["bank", "chain"])
    run_local({
        "bank": lambda ch: VerticalSecureBoost(n_trees=1, max_depth=2).fit(ch, Xg, y, keypair=keypair),
        "chain": lambda ch: VerticalSecureBoost(n_trees=1, max_depth=2).fit(
            ch, Xh, guest="bank", feature_names=hnames, monotonic_cst={"bill_amt1": -1}),
    }, hub=hub, timeout=120)
    (msg,) = [serde.decode(p) for s, r, t, p in hub.captured if t.endswith("setup-reply")]
    assert msg["monotone"].tolist() == [-1] + [0] * (len(hnames) - 1)
    assert msg["feature_names"] == [""] * len(hnames)
    raw = b"".join(p for s, r, t, p in hub.captured if r == "bank")
    assert not any(n.encode() in raw for n in hnames)


@pytest.mark.parametrize("cst,match", [
    (np.array([-1, 2], dtype=np.int8), "monotone must hold"),
    (np.array([1], dtype=np.int8), "monotone must hold"),
])
def test_guest_refuses_bad_host_constraints(cst, match):
    msg = {"n_bins_non_missing": np.array([5, 5]), "resume_trees": 0, "monotone": cst, "feature_names": ["", ""]}
    with pytest.raises(ProtocolError, match=match):
        spec.check_setup_reply(msg, "chain", 32)


def test_constraint_validation():
    with pytest.raises(ConfigError, match="no feature 'nope'"):
        monotone_array({"nope": 1}, ["bank.pay_0"])
    with pytest.raises(ConfigError, match="must be 1, -1 or 0"):
        monotone_array({"pay_0": 2}, ["bank.pay_0"])
    assert monotone_array({"pay_0": 1}, ["bank.pay_0", "bank.x"]).tolist() == [1, 0]
    with pytest.raises(DataError, match="monotone constraints"):
        GBDTReference(monotonic_cst=[1, 0, 3]).fit(np.zeros((10, 3)), np.r_[np.zeros(5), np.ones(5)])


def test_job_step_takes_constraints_from_table_config_and_job(keypair, tmp_path, monkeypatch):
    """The step: the host's table config and the job's per-party section declare constraints; the guest's
    weight_column is taken out of its features; the result reports how many constraints each party holds."""
    from fedcredit.config import TableConfig
    from fedcredit.data import Table
    from fedcredit.protocols.context import StepContext
    from fedcredit.protocols.registry import get_step
    import fedcredit.crypto.paillier as paillier

    Xg, Xh, y, gnames, hnames = _credit3(1200)
    ids = [str(i) for i in range(len(y))]
    w = np.linspace(0.5, 1.5, len(y))
    tables = {"bank": Table.from_arrays("bank", ids, np.c_[Xg, w], gnames + ["w"], y=y),
              "chain": Table.from_arrays("chain", ids, Xh, hnames)}
    cfgs = {"bank": TableConfig("credit", tmp_path / "b.csv"),
            "chain": TableConfig("credit", tmp_path / "c.csv", monotone={"bill_amt1": -1})}
    monkeypatch.setattr(paillier, "generate_keypair", lambda bits=2048: keypair)
    params = {"n_trees": 2, "max_depth": 2, "weight_column": "w", "he": "paillier",  # the patched small key
              "monotone": {"bank": {"pay_0": 1}, "chain": {"pay_amt1": -1}}}
    roles = {"bank": "guest", "chain": "host"}

    def party(name):
        return lambda ch: get_step("secureboost")(StepContext(
            job_id="j", step="sbt", kind="secureboost", party=name, roles=roles, params=dict(params),
            channel=ch.sub("j", "sbt"), data=tables[name], artifacts=FileArtifacts(tmp_path / name), table=cfgs[name]))

    out = run_local({p: party(p) for p in roles}, timeout=120)
    assert out["bank"]["monotone"] == {"guest": 1, "chain": 2} and out["bank"]["weighted"] is True
    model = GuestModel.load(tmp_path / "bank" / "sbt_guest.json")
    assert model.feature_names == [f"bank.{c}" for c in gnames]  # the weight column is not a feature
    ref = GBDTReference(n_trees=2, max_depth=2, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS,
                        monotonic_cst=np.r_[monotone_array({"pay_0": 1}, gnames),
                                            monotone_array({"bill_amt1": -1, "pay_amt1": -1}, hnames)]
                        ).fit(np.hstack([Xg, Xh]), y, sample_weight=w)
    assert [[n.value for n in t] for t in model.trees] == [[n.value for n in t] for t in ref.trees_]
    # a job that contradicts the owner's table config is refused
    params["monotone"] = {"chain": {"bill_amt1": 1}}
    with pytest.raises(Exception, match="contradicts"):
        run_local({p: party(p) for p in roles}, timeout=60)

