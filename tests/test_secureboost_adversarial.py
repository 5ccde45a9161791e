"""SecureBoost against a curious host and a malicious guest (issue 23, items 1 and 4).

1. A semi-honest host must learn nothing about the labels from the validation
   split it is sent (formerly stratified and seeded by the public
   ``random_state``: a host replayed it against label sequences) nor from the
   run id (formerly an unkeyed SHA-256 over the labels: a host could confirm a
   guess).
2. A malicious guest must not read a host's binned features through the
   histogram and split requests: the host tracks the tree's partition and
   refuses any request that is not a current node with exactly its rows, built
   or split once, at least ``min_node_rows`` rows with its sibling.

Small (1024-bit) keys: these tests are about logic.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import data_path

from fedcredit.artifacts import FileArtifacts
from fedcredit.errors import ProtocolError
from fedcredit.models.tree import GBDTReference
from fedcredit.models.tree.gbdt import validation_split
from fedcredit.protocols.secureboost import VerticalSecureBoost, spec
from fedcredit.protocols.secureboost.guest import GHCodec, _run_id
from fedcredit.protocols.secureboost.model import GUEST_FILE, GuestModel
from fedcredit.testing import small_keypair
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

Stage = spec.Stage


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _default_credit(n):
    import pandas as pd

    g = pd.read_csv(data_path("default_credit", "hetero_guest.csv")).iloc[:n]
    h = pd.read_csv(data_path("default_credit", "hetero_host.csv")).set_index("id").loc[g["id"]].reset_index()
    return (g.drop(columns=["id", "y"]).to_numpy(np.float64), h.drop(columns=["id"]).to_numpy(np.float64),
            g["y"].to_numpy())


def _fit(Xg, Xh, y, kw, keypair, *, hub=None, workdir=None):
    wd = (lambda name: None) if workdir is None else (lambda name: FileArtifacts(workdir / name))
    return run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair, artifacts=wd("bank")),
        "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank", artifacts=wd("host")),
    }, timeout=120, hub=hub)


def _setup_sent(hub) -> dict:
    return [serde.decode(p) for _, r, t, p in hub.captured if r == "host" and t == "setup"][-1]


# ---------------------------------------------------------------------------------------------------------------
# 1. The validation split and the run id tell a host nothing about the labels
# ---------------------------------------------------------------------------------------------------------------

def _old_stratified_split(y, fraction, random_state):
    """The split the guest used to send: stratified, seeded by the job's public ``random_state``."""
    rng = np.random.default_rng(random_state)
    valid = [rng.permutation(np.flatnonzero(y == c))[: int(round(fraction * np.sum(y == c)))] for c in np.unique(y)]
    valid = np.sort(np.concatenate(valid))
    return np.setdiff1d(np.arange(len(y)), valid), valid


def _old_run_id(params, n, train, y, hosts):
    """The unkeyed run id the guest used to send: a host can recompute it for a label guess."""
    h = hashlib.sha256(json.dumps({"params": params, "n": n, "hosts": hosts}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(train, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    return h.hexdigest()[:32]


def _replay_attack(n, valid, n_neg, fraction, random_state):
    """A host's forward-backward search for label sequences consistent with a stratified split it can replay.

    With the public seed and a guess of the number of negatives ``n_neg``, the host knows which ranks within
    each class the stratified split held out; a row's label is then constrained by whether it was held out.
    Returns the labels every consistent sequence agrees on ({row: label}), or None when no sequence is
    consistent with ``valid`` (the split was not drawn this way).
    """
    n_pos = n - n_neg
    rng = np.random.default_rng(random_state)
    in0 = np.zeros(n_neg + 1, dtype=bool)
    in0[rng.permutation(n_neg)[: int(round(fraction * n_neg))]] = True
    in1 = np.zeros(n_pos + 1, dtype=bool)
    in1[rng.permutation(n_pos)[: int(round(fraction * n_pos))]] = True
    held = np.zeros(n, dtype=bool)
    held[valid] = True
    z = np.arange(n_neg + 1)  # state: negatives among the rows so far

    def ok(i):
        ones = i - z
        ok0 = (z < n_neg) & (in0 == held[i])
        ok1 = (ones >= 0) & (ones < n_pos) & (in1[np.clip(ones, 0, n_pos)] == held[i])
        return ok0, ok1

    fwd = np.zeros((n + 1, n_neg + 1), dtype=bool)
    fwd[0, 0] = True
    for i in range(n):
        ok0, ok1 = ok(i)
        fwd[i + 1, 1:] |= (fwd[i] & ok0)[:-1]
        fwd[i + 1] |= fwd[i] & ok1
    if not fwd[n, n_neg]:
        return None
    bwd = np.zeros((n + 1, n_neg + 1), dtype=bool)
    bwd[n, n_neg] = True
    known = {}
    for i in range(n - 1, -1, -1):
        ok0, ok1 = ok(i)
        nxt0 = np.r_[bwd[i + 1, 1:], False]
        can0 = np.any(fwd[i] & ok0 & nxt0)
        can1 = np.any(fwd[i] & ok1 & bwd[i + 1])
        bwd[i] = (ok0 & nxt0) | (ok1 & bwd[i + 1])
        if can0 != can1:
            known[i] = int(can1)
    return known


def test_host_cannot_replay_the_validation_split_or_confirm_labels_with_the_run_id(keypair):
    Xg, Xh, y = _default_credit(600)
    kw = dict(n_trees=2, max_depth=2, early_stopping_rounds=1, validation_fraction=0.2, random_state=0)
    n, n_neg = len(y), int(np.sum(y == 0))

    # the attack, against the split the guest used to send: many labels with certainty, all of them right
    _, old_valid = _old_stratified_split(y, 0.2, 0)
    learned = _replay_attack(n, old_valid, n_neg, 0.2, 0)
    assert learned is not None and len(learned) > 50
    assert all(y[i] == lab for i, lab in learned.items())

    hub = MemoryHub(["bank", "host"])
    res = _fit(Xg, Xh, y, kw, keypair, hub=hub)
    setup = _setup_sent(hub)
    train, valid = setup["train_rows"], setup["valid_rows"]
    assert len(valid) == round(0.2 * n) and len(train) + len(valid) == n  # size from n alone
    # what the host knows (the public random_state, the two lists) does not reproduce the split ...
    assert not np.array_equal(valid, old_valid)
    assert not np.array_equal(valid, validation_split(n, 0.2, 0)[1])  # nor an unstratified public-seed replay
    # ... and the replay attack finds no label sequence (even with the true count of negatives)
    assert _replay_attack(n, valid, n_neg, 0.2, 0) is None
    # the guest's secret seed reproduces it, and the reference with it reproduces the trees
    seed = res["bank"].validation_seed_
    assert np.array_equal(validation_split(n, 0.2, seed)[1], valid) and res["bank"].model_.validation_seed == seed
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS, validation_seed=seed).fit(
        np.hstack([Xg, Xh]), y)
    assert [[(a.feature, a.bin, a.value) for a in nodes] for nodes in res["bank"].model_.trees] != []
    assert len(ref.trees_) == len(res["bank"].model_.trees)
    assert all(a.value == b.value for ta, tb in zip(res["bank"].model_.trees, ref.trees_) for a, b in zip(ta, tb))

    # the run id: the old unkeyed formula with the true labels (the best guess there is) does not give it
    params = {k: v for k, v in res["bank"].model_.params.items() if k not in ("key_bits", "n_trees", "gh_part_rows")}
    assert setup["run_id"] != _old_run_id(params, n, train, y.astype(np.int8), ["host"])
    assert setup["run_id"] != _run_id(b"\0" * 32, params, n, train, y, ["host"])
    # it is an HMAC under the guest's own key (kept in its model part, never sent)
    key = bytes.fromhex(res["bank"].model_.run_key)
    assert setup["run_id"] == _run_id(key, params, n, train, y, ["host"])
    assert not any(key in p or res["bank"].model_.run_key.encode() in p for _, _, _, p in hub.captured)

    # a second run on the same data with the same public parameters draws another split
    hub2 = MemoryHub(["bank", "host"])
    _fit(Xg, Xh, y, kw, keypair, hub=hub2)
    assert not np.array_equal(_setup_sent(hub2)["valid_rows"], valid)


def test_resume_keeps_the_secret_split(keypair, tmp_path):
    """The seed and run-id key live in the guest's checkpoint: a resumed run draws the same split and id."""
    Xg, Xh, y = _default_credit(800)
    kw = dict(n_trees=3, max_depth=2, early_stopping_rounds=3, random_state=1)
    hub = MemoryHub(["bank", "host"])
    full = _fit(Xg, Xh, y, kw, keypair, hub=hub, workdir=tmp_path)
    path = tmp_path / "bank" / GUEST_FILE
    m = GuestModel.load(path)
    m.trees = m.trees[:1]
    m.save(path)
    hub2 = MemoryHub(["bank", "host"])
    again = _fit(Xg, Xh, y, kw, keypair, hub=hub2, workdir=tmp_path)
    assert again["bank"].result_["resumed_from"] == 1
    assert _setup_sent(hub2)["run_id"] == _setup_sent(hub)["run_id"]
    assert np.array_equal(_setup_sent(hub2)["valid_rows"], _setup_sent(hub)["valid_rows"])
    assert again["bank"].validation_seed_ == full["bank"].validation_seed_
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS,
                        validation_seed=full["bank"].validation_seed_).fit(np.hstack([Xg, Xh]), y)
    for model in (full["bank"].model_, again["bank"].model_):
        assert len(model.trees) == len(ref.trees_)
        assert all(a.value == b.value for ta, tb in zip(model.trees, ref.trees_) for a, b in zip(ta, tb))


def test_a_resumed_run_stops_where_an_uninterrupted_run_stops(keypair, tmp_path, monkeypatch):
    """Early stopping replays the resumed trees' validation losses: a run resumed after its best tree keeps the
    same trees as the uninterrupted run and the reference (it used to restart the rule and keep a worse tree).

    Split seed 47 on these 800 rows: the reference's best prefix is 1 tree of 3, so the checkpoint holds 1 tree
    and the resumed run builds trees 2 and 3, neither of which improves the validation loss."""
    import fedcredit.protocols.secureboost.guest as guest_mod

    monkeypatch.setattr(guest_mod.secrets, "randbits", lambda k: 47)
    Xg, Xh, y = _default_credit(800)
    kw = dict(n_trees=3, max_depth=2, early_stopping_rounds=3, random_state=1)
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS,
                        validation_seed=47).fit(np.hstack([Xg, Xh]), y)
    assert len(ref.trees_) == 1 and len(ref.validation_loss_) == 3  # the case this test is about
    full = _fit(Xg, Xh, y, kw, keypair, workdir=tmp_path)
    assert full["bank"].validation_seed_ == 47 and len(full["bank"].model_.trees) == 1
    again = _fit(Xg, Xh, y, kw, keypair, workdir=tmp_path)  # resumes from the checkpoint's 1 tree
    assert again["bank"].result_["resumed_from"] == 1
    for model in (full["bank"].model_, again["bank"].model_):
        assert len(model.trees) == len(ref.trees_)
        assert all(a.value == b.value for ta, tb in zip(model.trees, ref.trees_) for a, b in zip(ta, tb))


# ---------------------------------------------------------------------------------------------------------------
# 2. A malicious guest driving the host directly
# ---------------------------------------------------------------------------------------------------------------

N_ROWS = 200
TAG = spec.SPEC.tag  # the deviating guest below writes raw messages under the spec's tags


class _EvilGuest:
    """Speaks SecureBoost to one host with crafted requests (the host role runs unchanged)."""

    def __init__(self, ch, keypair):
        self.ch, (self.pk, self.sk) = ch, keypair

    def setup(self, min_node_rows=spec.MIN_NODE_ROWS, max_depth=3, item_bits=None):
        self.max_depth = max_depth
        item_bits = GHCodec(N_ROWS, self.pk.bits - 1).item_bits if item_bits is None else item_bits
        self.ch.send("host", TAG(Stage.SETUP), {
            "run_id": "evil", "public_key": self.pk.to_wire(), "n_rows": N_ROWS,
            "train_rows": np.arange(N_ROWS, dtype=np.int64), "valid_rows": np.zeros(0, dtype=np.int64),
            "max_depth": max_depth, "max_bins": 32, "item_bits": item_bits, "resume_trees": 0,
            "gh_part_rows": N_ROWS, "min_node_rows": min_node_rows,
        })
        self.nb = self.ch.recv("host", TAG(Stage.SETUP_REPLY))["n_bins_non_missing"]

    def start(self, n_features):
        rows = np.arange(N_ROWS, dtype=np.int64)
        self.ch.send("host", TAG(Stage.START, t=0), {
            "mode": "secure", "gh_parts": 1, "rows": rows, "features": np.ones(n_features, dtype=bool),
            "keep_trees": 0,
        })
        self.ch.send("host", TAG(Stage.GH, t=0, k=0),
                     {"part": 0, "start": 0, "gh": self.sk.encrypt_ints([1] * N_ROWS).to_blob()})
        self.ch.recv("host", TAG(Stage.GH_ACK, t=0, k=0))

    @staticmethod
    def _csr(groups):
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(g) for g in groups])
        rows = np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, dtype=np.int64)
        return offsets, rows

    def hist(self, d, groups):
        offsets, rows = self._csr(groups)
        self.ch.send("host", TAG(Stage.HIST_REQ, t=0, d=d), {
            "done": False, "nodes": np.arange(len(groups), dtype=np.int64), "offsets": offsets, "rows": rows})
        return self.ch.recv("host", TAG(Stage.HIST, t=0, d=d))

    def split(self, d, items):
        """items: [(rows, feature, bin)]; returns the left masks."""
        offsets, rows = self._csr([r for r, _, _ in items])
        self.ch.send("host", TAG(Stage.SPLIT_REQ, t=0, d=d), {
            "nodes": np.arange(len(items), dtype=np.int64), "features": np.array([f for _, f, _ in items], np.int64),
            "bins": np.array([b for _, _, b in items], np.int64), "missing_left": np.zeros(len(items), bool),
            "offsets": offsets, "rows": rows, "left_bins": np.zeros(0, np.int64),
            "left_offsets": np.zeros(len(items) + 1, np.int64)})
        msg = self.ch.recv("host", TAG(Stage.SPLIT, t=0, d=d))
        out, at = [], 0
        for r, _, _ in items:
            out.append(msg["left"][at:at + len(r)])
            at += len(r)
        return out


ALL = np.arange(N_ROWS, dtype=np.int64)


def _root_split(g: _EvilGuest):
    """Level 0 as an honest guest plays it when the host wins the root: returns the two children's rows."""
    g.hist(0, [ALL])
    (left,) = g.split(0, [(ALL, 0, int(g.nb[0]) // 2)])
    return ALL[left], ALL[~left]


def _guest_split_root(g: _EvilGuest):
    """Level 0 when the guest wins the root: histogram of the root, no split request to this host."""
    g.hist(0, [ALL])
    g.split(0, [])


def _attack_all_rows_several_pairs(g):
    g.hist(0, [ALL])
    # one split request, every row, one (feature, bin) pair per feature: the bin bits of the whole matrix
    g.split(0, [(ALL, j, 0) for j in range(3)])


def _attack_one_row_root(g):
    g.hist(0, [ALL[5:6]])


def _attack_one_row_nodes_after_guest_split(g):
    _guest_split_root(g)
    g.hist(1, [ALL[5:6]])  # "a child of the guest's root split" of one row


def _attack_small_sibling(g):
    _guest_split_root(g)
    g.hist(1, [ALL[:N_ROWS - 1]])  # big enough itself, but parent - it is one row


def _attack_root_again(g):
    left, right = _root_split(g)
    g.hist(1, [ALL])  # the root is no longer a leaf


def _attack_rows_across_leaves(g):
    left, right = _root_split(g)
    g.hist(1, [np.sort(np.r_[left[: len(left) // 2], right[: len(right) // 2]])])


def _attack_part_of_own_child(g):
    left, right = _root_split(g)
    small = left if len(left) <= len(right) else right
    g.hist(1, [small[:-1]])  # this host made the split: only exactly a child


def _attack_build_both_children(g):
    left, right = _root_split(g)
    g.hist(1, [left, right])  # one child per split; the sibling is derived


def _attack_split_root_twice(g):
    left, right = _root_split(g)
    g.hist(1, [left if len(left) <= len(right) else right])
    g.split(1, [(ALL, 1, 0)])


def _attack_split_same_node_twice_in_one_request(g):
    g.hist(0, [ALL])
    g.split(0, [(ALL, 0, 1), (ALL, 0, 1)])


def _attack_split_without_histogram(g):
    left, right = _root_split(g)
    g.hist(1, [])  # builds nothing: the guest holds no histogram of either child
    g.split(1, [(left, 1, 0)])


def _attack_part_of_node_split(g):
    g.hist(0, [ALL])
    g.split(0, [(ALL[:100], 0, 0)])


def _attack_floor(g):
    pass  # the SETUP itself is refused


def _attack_item_bits(g):
    pass  # the SETUP itself is refused: a whole plaintext per sum would carry ~key_bits crafted row bits


@pytest.mark.parametrize("attack,match", [
    (_attack_all_rows_several_pairs, r"split-req from 'bank': rows are not (one current node|a node of level 0)"),
    (_attack_one_row_root, r"hist-req from 'bank': rows are part of a node of 200 rows"),
    (_attack_one_row_nodes_after_guest_split, r"hist-req from 'bank': a node or its sibling has fewer than 20 rows"),
    (_attack_small_sibling, r"hist-req from 'bank': a node or its sibling has fewer than 20 rows"),
    (_attack_root_again, r"hist-req from 'bank': rows are not one current node"),
    (_attack_rows_across_leaves, r"hist-req from 'bank': rows are not one current node"),
    (_attack_part_of_own_child, r"hist-req from 'bank': rows are part of a node of \d+ rows"),
    (_attack_build_both_children, r"hist-req from 'bank': rows are not a node of level 1 to build \(built already"),
    (_attack_split_root_twice, r"split-req from 'bank': rows are not one current node"),
    (_attack_split_same_node_twice_in_one_request, r"split-req from 'bank': rows are not one current node"),
    (_attack_split_without_histogram, r"split-req from 'bank': rows are not a node of level 1 whose histogram"),
    (_attack_part_of_node_split, r"split-req from 'bank': rows are part of a node of 200 rows"),
    (_attack_floor, r"setup from 'bank': min_node_rows 1 is below the floor 20"),
    (_attack_item_bits, r"setup from 'bank': item_bits 1023, expected \d+ for 200 training rows"),
])
def test_host_refuses_requests_outside_its_tracked_partition(keypair, attack, match):
    _, Xh, _ = _default_credit(N_ROWS)
    got = {}

    def guest(ch):
        g = _EvilGuest(ch, keypair)
        g.setup(min_node_rows=1 if attack is _attack_floor else spec.MIN_NODE_ROWS,
                item_bits=keypair[0].bits - 1 if attack is _attack_item_bits else None)
        g.start(Xh.shape[1])
        attack(g)
        got["answered"] = True  # not reached: the host refuses before answering

    with pytest.raises(ProtocolError, match=match):
        run_local({"bank": guest, "host": lambda ch: VerticalSecureBoost().fit(ch, Xh, guest="bank")}, timeout=60)
    assert "answered" not in got


def test_honest_level_sequence_is_answered(keypair):
    """The same driver playing by the rules (host split at the root, child built, split at level 1) is answered."""
    _, Xh, _ = _default_credit(N_ROWS)

    def guest(ch):
        g = _EvilGuest(ch, keypair)
        g.setup(max_depth=2)
        g.start(Xh.shape[1])
        left, right = _root_split(g)
        small, large = sorted((left, right), key=len)
        assert len(small) >= spec.MIN_NODE_ROWS
        hist = g.hist(1, [small])
        assert hist["count"] > 0
        (lm,) = g.split(1, [(large, 1, int(g.nb[1]) // 2)])
        assert lm.shape == large.shape
        ch.send("host", TAG(Stage.TREE_PREDICT_REQ, t=0), {"split_ids": np.zeros(0, np.int64),
                                                         "rows": np.zeros(0, np.int64)})
        ch.recv("host", TAG(Stage.TREE_PREDICT, t=0))
        ch.send("host", TAG(Stage.START, t=1), {"mode": "stop", "gh_parts": 0, "rows": np.zeros(0, np.int64),
                                                   "features": np.zeros(0, bool), "keep_trees": 1})
        return True

    out = run_local({"bank": guest, "host": lambda ch: VerticalSecureBoost().fit(ch, Xh, guest="bank")}, timeout=60)
    assert out["bank"] is True and len(out["host"].model_.splits) == 2
