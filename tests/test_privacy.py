"""Privacy defenses (docs/privacy.md): lossless when off, doing what they say when on; the attack code can win.

* label DP (randomized response) in SecureBoost and binning: the flip rate and
  its accountant, and the plaintext reference reproducing the guest's flips;
* ``guest_only_trees``: hosts receive no node membership of the first k trees;
* the hetero LR batch floor;
* ``[policy.privacy]`` minimums refuse a job at proposal time with a reason;
* the privacy benchmark's attacks recover a label planted into node membership.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import data_path

from fedcredit.config import job_from_dict, load_party_config
from fedcredit.data import Table
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.models.tree import GBDTReference
from fedcredit.models.tree.gbdt import flip_probability, label_dp_rng, randomized_response
from fedcredit.party.policy import check_job
from fedcredit.protocols.binning import BinningParams, run_guest, run_host
from fedcredit.protocols.binning.guest import debias_events
from fedcredit.protocols.hetero_lr._common import LRParams, Plan
from fedcredit.protocols.secureboost import VerticalSecureBoost, spec
from fedcredit.testing import small_keypair
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

privacy = pytest.importorskip("benchmarks.suites.privacy")


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _default_credit(n):
    import pandas as pd

    g = pd.read_csv(data_path("default_credit", "hetero_guest.csv")).iloc[:n]
    h = pd.read_csv(data_path("default_credit", "hetero_host.csv")).set_index("id").loc[g["id"]].reset_index()
    return (g.drop(columns=["id", "y"]).to_numpy(np.float64), h.drop(columns=["id"]).to_numpy(np.float64),
            g["y"].to_numpy())


def _fit(Xg, Xh, y, kw, keypair, hub=None):
    return run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair),
        "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank"),
    }, timeout=300, hub=hub)


def _trees(nodes_list):
    return [[(n.is_leaf, n.feature, n.bin, n.missing_left, n.left, n.right, n.value) for n in nodes]
            for nodes in nodes_list]


def _assert_same(fed, ref, offset):
    assert len(fed.trees) == len(ref.trees_)
    for a_nodes, b_nodes in zip(fed.trees, ref.trees_):
        assert len(a_nodes) == len(b_nodes)
        for a, b in zip(a_nodes, b_nodes):
            assert a.is_leaf == b.is_leaf and a.value == b.value
            if not a.is_leaf:
                assert (a.feature + (offset if a.party == "host" else 0), a.bin, a.left) == (b.feature, b.bin, b.left)


# ---------------------------------------------------------------------------------------------- label DP
@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0])
def test_randomized_response_flip_rate_and_accountant(eps):
    q = flip_probability(eps)
    # the accountant: the odds of a reported label under the two true labels are exactly e**eps
    assert (1 - q) / q == pytest.approx(math.exp(eps), rel=1e-12)
    y = np.tile([0, 1], 100_000)
    noisy = randomized_response(y, eps, label_dp_rng(7))
    n = len(y)
    rate = float(np.mean(noisy != y))
    assert abs(rate - q) < 4 * math.sqrt(q * (1 - q) / n)  # ~4 standard errors
    for c in (0, 1):  # flips independent of the class
        assert abs(np.mean(noisy[y == c] != c) - q) < 4 * math.sqrt(q * (1 - q) / (n / 2))
    # same secret seed, same flips (the reference reproduces the guest); another seed, other flips
    np.testing.assert_array_equal(noisy, randomized_response(y, eps, label_dp_rng(7)))
    assert np.any(noisy != randomized_response(y, eps, label_dp_rng(8)))


def test_label_dp_off_draws_nothing_and_changes_nothing():
    y = np.array([0, 1, 1, 0])
    assert flip_probability(None) == 0.0
    assert randomized_response(y, None, None) is y


def test_secureboost_defenses_off_are_lossless(keypair):
    """Explicitly off (None / 0 / False): the trees of today, bit for bit, as the reference's without the knobs."""
    Xg, Xh, y = _default_credit(1200)
    kw = dict(n_trees=3, max_depth=3)
    off = dict(kw, label_epsilon=None, guest_only_trees=0, guest_only_first_tree=False,
               min_node_rows=spec.MIN_NODE_ROWS)
    fed = _fit(Xg, Xh, y, off, keypair)["bank"].model_
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(np.hstack([Xg, Xh]), y)
    _assert_same(fed, ref, Xg.shape[1])
    assert any(n.party == "host" for nodes in fed.trees for n in nodes)


def test_secureboost_label_dp_trains_on_flipped_labels_the_reference_reproduces(keypair):
    Xg, Xh, y = _default_credit(1200)
    kw = dict(n_trees=3, max_depth=3, label_epsilon=1.0)
    est = _fit(Xg, Xh, y, kw, keypair)["bank"]
    fed, seed = est.model_, est.validation_seed_
    X = np.hstack([Xg, Xh])
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS, validation_seed=seed).fit(X, y)
    _assert_same(fed, ref, Xg.shape[1])  # the guest's flips are the reference's for the same secret seed
    # and they are not the true labels: the base score is the noisy positive rate
    noisy = randomized_response(y, 1.0, label_dp_rng(seed))
    assert fed.base_score == pytest.approx(math.log(noisy.mean() / (1 - noisy.mean())), abs=1e-12)
    assert np.mean(noisy != y) == pytest.approx(flip_probability(1.0), abs=0.05)
    clean = GBDTReference(n_trees=3, max_depth=3, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(X, y)
    assert _trees(clean.trees_) != _trees(fed.trees)


def test_binning_label_dp_host_sums_noisy_labels_and_guest_debiases():
    r = np.random.default_rng(0)
    n = 1500
    ids = [f"id{i}" for i in range(n)]
    xg, xh = r.normal(size=(n, 1)), r.normal(size=(n, 2))
    y = (r.random(n) < 1 / (1 + np.exp(-2 * xh[:, 0]))).astype(int)
    g = Table.from_arrays("bank", ids, xg, ["a"], y=y)
    h = Table.from_arrays("gov", ids, xh, ["c", "d"])
    pk, sk = kp = small_keypair(512)
    eps = 1.0
    hub = MemoryHub(["bank", "gov"])
    out = run_local({"bank": lambda ch: run_guest(ch, ["gov"], g, BinningParams(label_epsilon=eps), keypair=kp),
                     "gov": lambda ch: run_host(ch, "bank", h, BinningParams(label_epsilon=eps))}, hub=hub, timeout=120)
    blob = [serde.decode(p) for _, dst, t, p in hub.captured if dst == "gov" and t.endswith("labels")][0]["labels"]
    sent = np.asarray(sk.decrypt_ints(pk.vector_from_blob(blob)))
    q = flip_probability(eps)
    assert abs(np.mean(sent != y) - q) < 4 * math.sqrt(q * (1 - q) / n)  # what the host sums is RR labels
    for f, b in out["bank"]["host_bins"].items():  # debiased counts: close to the true ones
        assert np.all((0 <= b["events"]) & (b["events"] <= b["totals"]))
    assert set(out["gov"]) == {"gov.c", "gov.d"}


def test_debias_events_is_unbiased_and_off_is_identity():
    ev, tot = np.array([10, 40, 0]), np.array([100, 200, 50])
    np.testing.assert_array_equal(debias_events(ev, tot, None), ev)
    q = flip_probability(0.8)
    rng = np.random.default_rng(1)
    true_ev = np.array([30, 150])
    tot = np.array([1000, 1000])
    est = []
    for _ in range(400):
        noisy = np.array([rng.binomial(e, 1 - q) + rng.binomial(t - e, q) for e, t in zip(true_ev, tot)])
        est.append((noisy - q * tot) / (1 - 2 * q))
    assert np.allclose(np.mean(est, axis=0), true_ev, atol=6)
    assert np.all(debias_events(np.array([0, 1000]), tot, 0.8) == np.array([0, 1000]))  # clipped to [0, total]


# ---------------------------------------------------------------------------------------------- guest-only trees
@pytest.mark.parametrize("k", [2])
def test_guest_only_trees_send_hosts_no_node_membership(keypair, k):
    Xg, Xh, y = _default_credit(600)
    hub = MemoryHub(["bank", "host"])
    res = _fit(Xg, Xh, y, dict(n_trees=3, max_depth=2, guest_only_trees=k), keypair, hub=hub)
    to_host = [(t, serde.decode(p)) for _, dst, t, p in hub.captured if dst == "host"]
    for t in range(3):
        tags = [tg for tg, _ in to_host if re.search(rf"(^|/)tree-{t}/", tg)]
        start = [m for tg, m in to_host if tg.endswith(f"tree-{t}/start")][0]
        membership = [tg for tg in tags if tg.endswith(("hist-req", "split-req")) or "/part-" in tg]
        if t < k:  # no (g, h), no histogram or split request: no row list of any node
            assert start["mode"] == "guest_only" and start["gh_parts"] == 0 and not start["features"].any()
            assert membership == []
        else:
            assert start["mode"] == "secure" and membership
    trees = res["bank"].model_.trees
    assert all(n.party == "bank" for nodes in trees[:k] for n in nodes if not n.is_leaf)
    view = privacy.host_view(privacy.wire_events(hub.captured, "host", 3), len(y))
    assert view.shape[1] == 3 - k


def test_guest_only_first_tree_is_guest_only_trees_1(keypair):
    Xg, Xh, y = _default_credit(600)
    a = _fit(Xg, Xh, y, dict(n_trees=2, max_depth=2, guest_only_first_tree=True), keypair)["bank"].model_
    b = _fit(Xg, Xh, y, dict(n_trees=2, max_depth=2, guest_only_trees=1), keypair)["bank"].model_
    assert _trees(a.trees) == _trees(b.trees)
    assert all(n.party == "bank" for n in a.trees[0] if not n.is_leaf)


@pytest.mark.parametrize("guest_kw,host_kw,match", [
    ({"guest_only_trees": 0}, {"guest_only_trees": 2}, r"tree 0 is secure, but the job's first 2 trees are guest-only"),
    ({"guest_only_trees": 1}, {"guest_only_trees": 2}, r"tree 1 is secure, but the job's first 2 trees"),
    ({"min_node_rows": 20}, {"min_node_rows": 100}, r"min_node_rows 20 is below the job's 100"),
])
def test_host_holds_a_deviating_guest_to_the_jobs_protection(keypair, guest_kw, host_kw, match):
    """Attack: the guest runs with less protection than the job the host's policy approved; the host refuses
    before it receives any (g, h) or node rows of an unprotected tree."""
    Xg, Xh, y = _default_credit(300)
    kw = dict(n_trees=3, max_depth=2)
    with pytest.raises(ProtocolError, match=match):  # raised by the host before it reads the tree's (g, h)
        run_local({
            "bank": lambda ch: VerticalSecureBoost(**kw, **guest_kw).fit(ch, Xg, y, keypair=keypair),
            "host": lambda ch: VerticalSecureBoost(**kw, **host_kw).fit(ch, Xh, guest="bank"),
        }, timeout=60)


def test_guest_only_trees_must_be_non_negative():
    with pytest.raises(ConfigError, match="guest_only_trees"):
        VerticalSecureBoost(guest_only_trees=-1).fit(MemoryHub(["bank", "h"]).channel("bank"), np.zeros((4, 1)),
                                                     np.array([0, 1, 0, 1]))


# ---------------------------------------------------------------------------------------------- hetero LR floor
def test_lr_min_batch_size_floor():
    with pytest.raises(ConfigError, match="at least min_batch_size=500"):
        LRParams.from_dict({"batch_size": 100, "min_batch_size": 500})
    p_off = LRParams.from_dict({"batch_size": 300})
    p_on = LRParams.from_dict({"batch_size": 300, "min_batch_size": 200})
    off, on = Plan(1000, p_off), Plan(1000, p_on)  # 900 training rows: 300, 300, 300 -> no short batch
    assert [len(b) for b in off.batches(0)] == [len(b) for b in on.batches(0)] == [300, 300, 300]
    off, on = Plan(1100, p_off), Plan(1100, p_on)  # 990 rows: the last batch of 90 joins the one before it
    assert [len(b) for b in off.batches(0)] == [300, 300, 300, 90]
    batches = on.batches(0)
    assert [len(b) for b in batches] == [300, 300, 390]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.sort(np.concatenate(off.batches(0))))
    assert LRParams.from_dict({"batch_size": None, "min_batch_size": 500}).batch_size is None  # full batch passes


# ---------------------------------------------------------------------------------------------- policy
HOST = """
[party]
name = "chain"
listen = "127.0.0.1:0"
state_dir = "state"
insecure = true
[peers]
bank = "127.0.0.1:1"
[tables.t]
path = "t.csv"
[policy]
proposers = ["bank"]
[policy.privacy]
max_label_epsilon = 1.0
min_node_rows = 100
min_guest_only_trees = 1
min_bin_count = 200
min_batch_size = 1000
"""


@pytest.fixture
def host_config(tmp_path):
    (tmp_path / "t.csv").write_text("id,a\n1,0\n")
    p = tmp_path / "chain.toml"
    p.write_text(HOST)
    return load_party_config(p)


def _job(kind, params):
    return job_from_dict({"job": {"name": "j"}, "parties": {"bank": {"role": "guest", "table": "t"},
                                                            "chain": {"role": "host", "table": "t"}},
                          "steps": [{"kind": kind, "name": "s", "params": params}]})


OK_SBT = {"label_epsilon": 0.5, "min_node_rows": 100, "guest_only_trees": 1}


@pytest.mark.parametrize("kind,params,reason", [
    ("secureboost", {"min_node_rows": 100, "guest_only_trees": 1}, r"secureboost without label DP"),
    ("secureboost", dict(OK_SBT, label_epsilon=2.0), r"label_epsilon 2.0 is above the maximum 1.0"),
    ("secureboost", dict(OK_SBT, min_node_rows=50), r"min_node_rows 50 is below the minimum 100"),
    ("secureboost", {"label_epsilon": 0.5, "guest_only_trees": 1}, r"min_node_rows 20 is below the minimum 100"),
    ("secureboost", dict(OK_SBT, guest_only_trees=0), r"0 guest-only trees, below the minimum 1"),
    ("binning", {"label_epsilon": 1.0}, r"min_bin_count 50 is below the minimum 200"),
    ("binning", {"min_bin_count": 500}, r"binning without label DP"),
    ("hetero_lr", {}, None),  # default batch 2000
    ("hetero_lr", {"batch_size": 100}, r"batch_size 100 is below the minimum 1000"),
    ("hetero_lr", {"batch_size": None}, None),
])
def test_policy_privacy_minimums_refuse_at_proposal(host_config, kind, params, reason):
    why = check_job(host_config, _job(kind, params), "bank")
    if reason is None:
        assert why is None
    else:
        assert why is not None and re.search(reason, why) and "[policy.privacy]" in why and "'s'" in why


def test_policy_privacy_accepts_a_job_that_meets_it(host_config):
    assert check_job(host_config, _job("secureboost", OK_SBT), "bank") is None
    assert check_job(host_config, _job("secureboost", dict(OK_SBT, guest_only_trees=0, guest_only_first_tree=True)),
                     "bank") is None
    assert check_job(host_config, _job("binning", {"label_epsilon": 1.0, "min_bin_count": 200}), "bank") is None


def test_policy_privacy_config_is_checked(tmp_path):
    (tmp_path / "t.csv").write_text("id,a\n1,0\n")
    p = tmp_path / "chain.toml"
    p.write_text(HOST.replace("max_label_epsilon = 1.0", "max_label_epsilon = -1.0\nunknown = 3"))
    with pytest.raises(ConfigError) as e:
        load_party_config(p)
    assert "max_label_epsilon" in str(e.value) and "unknown" in str(e.value)


def test_no_privacy_policy_requires_nothing(tmp_path):
    (tmp_path / "t.csv").write_text("id,a\n1,0\n")
    p = tmp_path / "chain.toml"
    p.write_text(HOST.split("[policy.privacy]")[0])
    cfg = load_party_config(p)
    assert check_job(cfg, _job("secureboost", {}), "bank") is None
    assert check_job(cfg, _job("hetero_lr", {"batch_size": 10}), "bank") is None


# ---------------------------------------------------------------------------------------------- the attack code
def test_attacks_recover_a_label_planted_in_node_membership():
    """Defaults (positives) sit together in small nodes: every attack finds them; a random view gives ~0.5."""
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.2).astype(np.int64)
    trees = []
    for t in range(5):  # per tree: positives split over 2 small leaves, negatives over 4 large ones
        leaf = np.where(y == 1, rng.integers(0, 2, n), 2 + rng.integers(0, 4, n))
        noise = rng.random(n) < 0.05  # a few rows misplaced
        leaf[noise] = rng.integers(0, 6, int(noise.sum()))
        trees.append(leaf)
    view = np.stack(trees, axis=1)
    assert privacy.auc(y, privacy.attack_node_size(view)) > 0.95
    assert privacy.auc(y, privacy.attack_spectral(view)) > 0.95
    assert privacy.attack_known_labels(view, y, fraction=0.05) > 0.95
    random_view = rng.integers(0, 6, size=(n, 5))
    assert abs(privacy.auc(y, privacy.attack_node_size(random_view)) - 0.5) < 0.05
    assert abs(privacy.attack_known_labels(random_view, y, fraction=0.05) - 0.5) < 0.06


def test_recorded_host_view_equals_the_wire(keypair):
    """The benchmark's plaintext recording of the host's view is what the host's messages carry."""
    Xg, Xh, y = _default_credit(700)
    out = privacy.wire_check(Xg, Xh, y, n_trees=3, max_depth=3)
    assert out["view_matches_wire"] and out["secure_trees_seen"] == 2
