"""Vertical LR equals the centralized reference; the step pipeline keeps host scores and labels private."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.artifacts import FileArtifacts
from fedcredit.data import Table
from fedcredit.errors import ConfigError, DataError
from fedcredit.models import metrics
from fedcredit.models.logistic import LogisticRegressionGD
from fedcredit.protocols.context import StepContext
from fedcredit.protocols.hetero_lr import LRParams, VerticalLogisticRegression, run_arbiter, run_guest, run_host
from fedcredit.protocols.registry import get_step
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import MemoryHub, run_local

TOL = 1e-9  # Paillier is exact; only the 2^-32 rounding of scores differs from float64


def _data(n=300, seed=0):
    r = np.random.default_rng(seed)
    Xg, Xh1, Xh2 = r.normal(size=(n, 2)), r.normal(size=(n, 2)), r.normal(size=(n, 1))
    z = Xg @ [1, -0.5] + Xh1 @ [0.7, 0.2] + Xh2 @ [0.4]
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return Xg, {"h1": Xh1, "h2": Xh2}, y


@pytest.mark.parametrize("mode, hosts", [("coordinated", ["h1", "h2"]), ("two_party", ["h1"])])
@pytest.mark.parametrize("batch_size, schedule", [(100, "sqrt"), (None, "constant")])
def test_federated_equals_centralized(mode, hosts, batch_size, schedule):
    Xg, Xh, y = _data()
    kw = dict(batch_size=batch_size, max_epochs=4, learning_rate=0.5, schedule=schedule, validation_fraction=0.2,
              alpha=0.01)
    p = LRParams(mode=mode, **kw)
    arb = "a" if mode == "coordinated" else None
    roles = {"g": lambda ch: run_guest(ch, Xg, y, p, hosts=hosts, arbiter=arb, keypair=small_keypair(512, index=0))}
    for h in hosts:
        roles[h] = (lambda h: lambda ch: run_host(ch, Xh[h], p, guest="g", arbiter=arb,
                                                 keypair=small_keypair(512, index=1)))(h)
    if arb:
        roles["a"] = lambda ch: run_arbiter(ch, len(y), p, guest="g", hosts=hosts, keypair=small_keypair(512))
    out = run_local(roles, timeout=120)
    ref = LogisticRegressionGD(**kw).fit(np.hstack([Xg] + [Xh[h] for h in hosts]), y)
    fed = np.concatenate([out["g"]["coef"]] + [out[h]["coef"] for h in hosts])
    np.testing.assert_allclose(fed, ref.coef_, rtol=0, atol=TOL)
    assert out["g"]["intercept"] == pytest.approx(ref.intercept_, abs=TOL)
    assert out["g"]["n_epochs"] == ref.n_epochs_
    np.testing.assert_allclose([h["val_loss"] for h in out["g"]["history"]],
                               [h["val_loss"] for h in ref.history_], atol=1e-9)


def test_two_party_refuses_two_hosts():
    Xg, _, y = _data()
    with pytest.raises(DataError, match="exactly one host"):
        run_guest(None, Xg, y, LRParams(mode="two_party"), hosts=["h1", "h2"])


@pytest.mark.parametrize("bad, match", [({"mode": "three_party"}, "mode"), ({"key_bits": 1024}, "key_bits"),
                                        ({"alpha": True}, "alpha")])
def test_bad_params(bad, match):
    with pytest.raises(ConfigError, match=match):
        VerticalLogisticRegression(**bad).fit(None, role="guest", guest="g", hosts=[])


def test_non_binary_label():
    Xg, _, y = _data()
    with pytest.raises(DataError, match="binary"):
        run_guest(None, Xg, np.r_[y[:-1], 2], LRParams(), hosts=["h1"], arbiter="a")


def _pipeline(tmp_path, mode, steps):
    r = np.random.default_rng(5)
    n = 400
    ids = [f"c{i}" for i in range(n)]
    xg = r.normal(size=(n, 2))
    xh = np.c_[r.normal(size=n), r.integers(0, 4, n).astype(float)]
    xh[r.random(n) < 0.1, 0] = np.nan
    z = xg[:, 0] + np.nan_to_num(xh[:, 0]) + 0.5 * xh[:, 1] - 1
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    tables = {"bank": Table.from_arrays("bank", ids, xg, ["a", "b"], y=y),
              "gov": Table.from_arrays("gov", ids, xh, ["c", "cat"])}
    roles = {"bank": "guest", "gov": "host"}
    if mode == "coordinated":
        roles["sup"] = "arbiter"
    hub = MemoryHub(list(roles))
    states = {p: {} for p in roles}
    results = {}
    for name, kind, params in steps:
        def make(p):
            def fn(ch):
                ctx = StepContext(job_id="j", step=name, kind=kind, party=p, roles=roles, params=params,
                                  channel=ch.sub("j", name), data=tables.get(p), state=states[p],
                                  artifacts=FileArtifacts(tmp_path / p / name))
                return get_step(kind)(ctx)
            return fn
        results[name] = run_local({p: make(p) for p in roles}, hub=hub, timeout=300)
    return hub, tables, states, results, y


@pytest.mark.parametrize("mode, backend", [("coordinated", "paillier"), ("two_party", "paillier"),
                                           ("coordinated", "ckks"), ("two_party", "ckks")])
def test_pipeline_privacy_and_scorecard(tmp_path, mode, backend):
    steps = [
        ("bin", "binning", {"max_bins": 6, "min_bin_count": 30, "categorical": ["cat"]}),
        ("sel", "select", {"iv_threshold": 0.0}),
        ("lr", "hetero_lr", {"mode": mode, "backend": backend, "features": "woe", "batch_size": 200,
                             "max_epochs": 2, "validation_fraction": 0.2}),
        ("card", "scorecard", {"pdo": 20.0, "base_score": 600.0, "base_odds": 50.0}),
    ]
    hub, tables, states, results, y = _pipeline(tmp_path, mode, steps)
    # what crossed the wire: no labels, no raw host values, no host partial scores
    host = tables["gov"]
    part = states["gov"]["hetero_lr"]
    from fedcredit.protocols.hetero_lr import partial_score

    hz = partial_score(host, part)
    secrets_ = [np.asarray(y, dtype=np.int8).tobytes(), np.asarray(y, dtype=np.float64).tobytes()[:80],
                np.asarray(y, dtype=np.int64).tobytes()[:80], hz.tobytes()[:80],
                np.nan_to_num(host.X[:, 0]).tobytes()[:80], host.X[:, 1].tobytes()[:80]]
    for s, r, tag, payload in hub.captured:
        for sec in secrets_:
            assert sec not in payload, (s, r, tag)
    # no revealed bin below the minimum count
    for info in states["bank"]["binning"]["bins"].values():
        assert np.all((info.counts == 0) | (info.counts >= 30))
    for b in states["gov"]["binning"]["bins"].values():
        assert np.all((b.counts == 0) | (b.counts >= 30))
    # scorecard: base + points of each row's bins == offset - factor * z
    factor, offset = 20 / np.log(2), 600 - 20 / np.log(2) * np.log(50)
    total = np.full(len(y), states["bank"]["scorecard"]["base"])
    z = np.full(len(y), states["bank"]["hetero_lr"]["intercept"])
    for p in ("bank", "gov"):
        lr_part = states[p]["hetero_lr"]
        for f, w in zip(lr_part["features"], lr_part["coef"]):
            b = lr_part["bins"][f]
            col = tables[p].select([f]).X[:, 0]
            total += states[p]["scorecard"]["points"][f][b.assign(col)]
            z += w * b.transform(col)
    np.testing.assert_allclose(total, offset - factor * z, atol=1e-9)
    assert (tmp_path / "gov" / "card" / "scorecard.csv").read_text().startswith("feature,bin")
    assert "(base)" not in (tmp_path / "gov" / "card" / "scorecard.md").read_text()


def test_standardized_features_with_missing_values_are_refused(tmp_path):
    steps = [("lr", "hetero_lr", {"mode": "two_party", "max_epochs": 1})]
    with pytest.raises(DataError, match="missing values"):
        _pipeline(tmp_path, "two_party", steps)


def test_pipeline_evaluate(tmp_path):
    steps = [
        ("bin", "binning", {"max_bins": 6, "min_bin_count": 30}),
        ("lr", "hetero_lr", {"mode": "two_party", "features": "woe", "batch_size": 200, "max_epochs": 2,
                             "validation_fraction": 0.25}),
        ("ev", "evaluate", {}),
    ]
    hub, tables, states, results, y = _pipeline(tmp_path, "two_party", steps)
    res = results["ev"]["bank"]
    assert 0.6 < res["validation"]["auc"] <= 1 and len(res["validation"]["lift"]) == 10
    assert res["validation"]["gini"] == pytest.approx(2 * res["validation"]["auc"] - 1)
    assert (tmp_path / "bank" / "ev" / "roc.png").exists() and (tmp_path / "bank" / "ev" / "ks.png").exists()
    sc = np.load(tmp_path / "bank" / "ev" / "scores.npz")  # for report.html's plots, on the guest only
    v = sc["validation"]
    assert 0 < v.sum() < len(v) and metrics.auc(sc["y"][v], sc["score"][v]) == pytest.approx(res["validation"]["auc"])
    assert not (tmp_path / "gov" / "ev" / "scores.npz").exists()


def test_matvec_on_the_pool_equals_in_process():
    from fedcredit.protocols.hetero_lr._matvec import matvec

    pk, sk = small_keypair(512)
    r = np.random.default_rng(1)
    d = r.integers(-(2**40), 2**40, 600)
    K = np.c_[r.integers(-768, 769, (600, 2)), r.integers(-3, 4, (600, 1))]
    cv = pk.encrypt_ints(d)
    want = [int(v) for v in K.T.astype(object) @ d.astype(object)]
    assert sk.decrypt_signed(matvec(cv, K, parallel=False)) == want
    assert sk.decrypt_signed(matvec(cv, K, parallel=True)) == want


def test_matvec_uses_the_public_raw_hooks_and_stays_derived():
    """``_matvec`` goes through ``CipherVector.raw_ints`` / ``PublicKey.vector_from_raw``; results are never fresh,
    so ``to_blob`` re-randomizes them (the key owner cannot see how they were formed)."""
    from fedcredit.errors import ConfigError
    from fedcredit.protocols.hetero_lr._matvec import column_dot, matvec, matvec_naive

    pk, sk = small_keypair(512)
    r = np.random.default_rng(2)
    d = r.integers(-(2**40), 2**40, 40)
    K = np.c_[r.integers(-768, 769, (40, 1)), r.integers(0, 3, (40, 1)) * 97]  # 8-bit codes; a WOE-like column
    cv = pk.encrypt_ints(d)
    raw = cv.raw_ints()
    with pytest.raises(ValueError):
        raw[0] = raw[1]  # read-only: no way to change a vector through its raw view
    want = [int(v) for v in K.T.astype(object) @ d.astype(object)]
    for out in (matvec(cv, K, parallel=False), matvec_naive(cv, K)):
        assert sk.decrypt_signed(out) == want and not out.is_fresh
        sent = pk.vector_from_blob(out.to_blob()).ciphertexts()
        assert sent != out.ciphertexts() and sk.decrypt_signed(pk.vector_from_blob(out.to_blob())) == want
    one = pk.vector_from_raw([column_dot(raw, K[:, 0], pk.nsquare)])
    assert sk.decrypt_signed(one) == want[:1] and not one.is_fresh
    with pytest.raises(ConfigError, match="raw ciphertexts"):
        pk.vector_from_raw([0])
    with pytest.raises(ConfigError, match="raw ciphertexts"):
        pk.vector_from_raw([pk.nsquare])


def test_the_arbiter_takes_the_row_count_from_the_guest_and_checks_it():
    """ROWS is a spec message (no ad-hoc ``meta/rows`` tag): a count that differs from the one expected is refused."""
    from fedcredit.errors import ProtocolError

    Xg, Xh, y = _data()
    p = LRParams(mode="coordinated", batch_size=None, max_epochs=1, validation_fraction=0.0)
    roles = {"g": lambda ch: run_guest(ch, Xg, y, p, hosts=["h1"], arbiter="a", keypair=small_keypair(512, index=0)),
             "h1": lambda ch: run_host(ch, Xh["h1"], p, guest="g", arbiter="a"),
             "a": lambda ch: run_arbiter(ch, len(y) + 1, p, guest="g", hosts=["h1"], keypair=small_keypair(512))}
    with pytest.raises(ProtocolError, match="row count"):
        run_local(roles, timeout=30)
    roles["a"] = lambda ch: run_arbiter(ch, None, p, guest="g", hosts=["h1"], keypair=small_keypair(512))
    roles["h1"] = lambda ch: run_host(ch, Xh["h1"], p, guest="g", arbiter="a")
    assert run_local(roles, timeout=60)["a"]["epochs"] == 1


def test_spec_checks_roles_and_the_order_on_each_link():
    from fedcredit.errors import ProtocolError
    from fedcredit.protocols.hetero_lr import spec
    from fedcredit.protocols.hetero_lr.spec import Stage

    class _Ch:  # nothing may reach the channel: the session refuses first
        def send(self, *a):
            raise AssertionError("sent")

        def recv(self, *a):
            raise AssertionError("received")

    host = spec.session("h1", "coordinated", guest="g", hosts=["h1"], arbiter="a")
    with pytest.raises(ProtocolError, match="out of order"):  # a gradient answer before the key and the gradient
        host.recv(_Ch(), "a", Stage.GRAD_PLAIN_AH, e=0, b=0)
    with pytest.raises(ProtocolError, match="expected the arbiter"):  # the key comes from the arbiter only
        host.recv(_Ch(), "g", Stage.KEY_AH)
    guest = spec.session("g", "two_party", guest="g", hosts=["h1"])
    with pytest.raises(ProtocolError, match="out of order"):  # the residual before the keys
        guest.send(_Ch(), "h1", Stage.U, {"u": None}, e=0, b=0)
    assert spec.SPEC.tag(Stage.GRAD_HA, e=2, b=5) == "e-2/b-5/grad-ha"
