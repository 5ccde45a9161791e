"""Job-level resume (issue #21): per-round checkpoints, their agreement, resumed results equal to uninterrupted ones.

The process-level tests (real party processes, a SIGKILLed host, ``fedcredit run --resume``) are in
``tests/test_resume_processes.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.artifacts import FileArtifacts
from fedcredit.errors import JobCancelled, ProtocolError
from fedcredit.protocols.checkpoint import KEEP, Checkpoint, agree
from fedcredit.protocols.hetero_lr import LRParams, run_arbiter, run_guest, run_host
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import run_local


def _data(n=300, seed=0):
    r = np.random.default_rng(seed)
    Xg, Xh = r.normal(size=(n, 2)), r.normal(size=(n, 3))
    z = Xg @ [1, -0.5] + Xh @ [0.7, 0.2, 0.4]
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return Xg, Xh, y


def _die_at(epoch):
    """A ``check_cancelled`` that fails the guest when epoch ``epoch`` begins (the party died after ``epoch``)."""
    calls = []

    def check():
        calls.append(1)
        if len(calls) > epoch:
            raise JobCancelled("died")
    return check


def _lr(p, mode, ckpts=None, keys=0, die_at=None):
    Xg, Xh, y = _data()
    arb = "a" if mode == "coordinated" else None
    ck = ckpts or {}
    roles = {
        "g": lambda ch: run_guest(ch, Xg, y, p, hosts=["h"], arbiter=arb, keypair=small_keypair(512, index=keys),
                                  checkpoint=ck.get("g"), check_cancelled=die_at),
        "h": lambda ch: run_host(ch, Xh, p, guest="g", arbiter=arb, keypair=small_keypair(512, index=keys + 1),
                                 checkpoint=ck.get("h")),
    }
    if arb:
        roles["a"] = lambda ch: run_arbiter(ch, len(y), p, guest="g", hosts=["h"],
                                            keypair=small_keypair(512, index=keys + 2), checkpoint=ck.get("a"))
    return run_local(roles, timeout=120)


@pytest.mark.parametrize("mode, validation", [("coordinated", 0.2), ("two_party", 0.2), ("coordinated", 0.0)])
def test_lr_resumed_from_an_epoch_equals_uninterrupted(tmp_path, mode, validation):
    p = LRParams(mode=mode, batch_size=100, max_epochs=5, learning_rate=0.5, validation_fraction=validation,
                 alpha=0.01, n_iter_no_change=10)
    full = _lr(p, mode)
    # a run whose guest died when epoch 3 began: every party kept rounds 2 and 3
    parties = ["g", "h"] + (["a"] if mode == "coordinated" else [])
    dirs = {q: tmp_path / q for q in parties}
    with pytest.raises(JobCancelled):
        _lr(p, mode, {q: Checkpoint(FileArtifacts(dirs[q])) for q in parties}, die_at=_die_at(3))
    assert all(Checkpoint(FileArtifacts(dirs[q])).rounds() == [2, 3] for q in parties)
    # resumed with other keys (keys are fresh on every attempt): the same weights, bit for bit
    again = _lr(p, mode, {q: Checkpoint(FileArtifacts(dirs[q]), resume_round=3) for q in parties}, keys=3)
    np.testing.assert_array_equal(again["g"]["coef"], full["g"]["coef"])
    np.testing.assert_array_equal(again["h"]["coef"], full["h"]["coef"])
    assert again["g"]["intercept"] == full["g"]["intercept"]
    assert again["g"]["n_epochs"] == full["g"]["n_epochs"]
    assert [r.get("val_loss") for r in again["g"]["history"]] == [r.get("val_loss") for r in full["g"]["history"]]


def test_lr_resume_after_the_stop_decision_runs_no_epoch(tmp_path):
    p = LRParams(mode="two_party", batch_size=100, max_epochs=6, learning_rate=0.5, validation_fraction=0.2,
                 n_iter_no_change=1, tol=10.0)  # stops after the second epoch: no improvement >= 10
    dirs = {q: tmp_path / q for q in ("g", "h")}
    full = _lr(p, "two_party", {q: Checkpoint(FileArtifacts(d)) for q, d in dirs.items()})
    last = Checkpoint(FileArtifacts(dirs["g"])).rounds()[-1]
    assert last == len(full["g"]["history"]) < 6
    again = _lr(p, "two_party", {q: Checkpoint(FileArtifacts(d), resume_round=last) for q, d in dirs.items()})
    np.testing.assert_array_equal(again["g"]["coef"], full["g"]["coef"])
    assert again["g"]["history"] == full["g"]["history"]


def test_checkpoint_keeps_the_last_rounds_and_round_trips_exactly(tmp_path):
    ck = Checkpoint(FileArtifacts(tmp_path))
    w = np.array([0.1, 1 / 3, -2.5e-300, np.pi])
    for r in range(1, 5):
        ck.save(r, {"w": w * r, "loss": np.inf, "h": [{"x": 1.0}]})
    assert KEEP == 2 and ck.rounds() == [3, 4]
    st = Checkpoint(FileArtifacts(tmp_path), resume_round=4).resume()
    assert st[0] == 4 and st[1]["loss"] == np.inf
    np.testing.assert_array_equal(st[1]["w"], w * 4)
    ck.clear()
    assert ck.rounds() == []


@pytest.mark.parametrize("held, expect", [({"x": [3, 4], "y": [3], "z": [2, 3]}, 3),
                                          ({"x": [4, 5], "y": [3, 4], "z": [4]}, 4),
                                          ({"x": [1], "y": [2], "z": []}, None)])
def test_agree_takes_the_latest_common_round(held, expect):
    got = run_local({q: (lambda q: lambda ch: agree(ch, q, held, held[q]))(q) for q in held})
    assert set(got.values()) == {expect}


def test_agree_refuses_malformed_rounds():
    def liar(ch):
        ch.send("x", "rounds", {"rounds": ["../../etc"]})
        return None

    with pytest.raises(ProtocolError, match="malformed checkpoint rounds from 'y'"):
        run_local({"x": lambda ch: agree(ch, "x", ["x", "y"], [1]), "y": liar})


def _homo(tmp_path, ckpts, die_after=None, rounds=5, mode="secagg"):
    from fedcredit.protocols.homo import FedAvgClassifier
    from fedcredit.data import Table

    r = np.random.default_rng(1)
    clients = ["b1", "b2", "b3"]
    tables = {}
    for c in clients:
        X = r.normal(size=(120, 3))
        y = (r.random(120) < 1 / (1 + np.exp(-(X @ [1.0, -1.0, 0.5])))).astype(int)
        tables[c] = Table(party=c, path=None, id_column="id", ids=np.array([f"{c}-{i}" for i in range(120)],
                          dtype=object), columns=("a", "b", "c"), X=X, y=y.astype(np.int8), label_column="y")

    class Dying(Checkpoint):  # the aggregator dies right after saving round ``die_after``
        def save(self, round_, state):
            super().save(round_, state)
            if die_after is not None and round_ == die_after:
                raise JobCancelled("died")

    def role(name):
        def fn(ch):
            ck = ckpts.get(name)
            if name == "agg" and ck is not None and die_after is not None:
                ck = Dying(ck.store, ck.resume_round)
            est = FedAvgClassifier(mode=mode, rounds=rounds, learning_rate=0.1, batch_size=32, random_state=3,
                                   client_timeout=20.0)
            est.fit(ch, tables.get(name), role="aggregator" if name == "agg" else "client", clients=clients,
                    aggregator="agg", n_features=3, checkpoint=ck)
            return est.report_["params"]
        return fn

    return run_local({n: role(n) for n in ["agg", *clients]}, timeout=60)


def test_homo_resumed_from_a_round_equals_uninterrupted(tmp_path):
    full = _homo(tmp_path, {})
    parties = ["agg", "b1", "b2", "b3"]
    dirs = {q: tmp_path / q for q in parties}
    with pytest.raises(JobCancelled):
        _homo(tmp_path, {q: Checkpoint(FileArtifacts(d)) for q, d in dirs.items()}, die_after=3)
    held = {q: Checkpoint(FileArtifacts(d)).rounds() for q, d in dirs.items()}
    assert held["agg"] == [2, 3]
    common = max(set.intersection(*(set(v) for v in held.values())))
    again = _homo(tmp_path, {q: Checkpoint(FileArtifacts(d), resume_round=common) for q, d in dirs.items()})
    np.testing.assert_array_equal(again["agg"], full["agg"])  # the global model, exactly (clients re-keyed)
    for c in ("b1", "b2", "b3"):
        np.testing.assert_array_equal(again[c], full["agg"])
