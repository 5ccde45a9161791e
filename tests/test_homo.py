"""Horizontal training: secure sums, dropouts at every stage, privacy of uploads, FedAvg equivalence."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import stats

from conftest import data_path
from fedcredit.artifacts import FileArtifacts
from fedcredit.crypto import secagg as sa
from fedcredit.data import Table, load_table
from fedcredit.errors import ConfigError, PeerError, ProtocolError
from fedcredit.models import metrics
from fedcredit.protocols.context import StepContext
from fedcredit.protocols.homo import FedAvgClassifier, HomoParams, RoundFailed, run
from fedcredit.protocols.homo import spec
from fedcredit.protocols.homo.aggregator import CkksAggregation, PlainAggregation, SecAggAggregation, send_all
from fedcredit.protocols.homo.client import CkksSubmitter, HomoClient, PlainSubmitter, SecAggSubmitter
from fedcredit.protocols.homo.spec import Stage
from fedcredit.protocols.registry import get_step
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

AGG = "agg"
_SUB = {"plain": PlainSubmitter, "secagg": SecAggSubmitter, "ckks": CkksSubmitter}
_AGGR = {"plain": PlainAggregation, "secagg": SecAggAggregation, "ckks": CkksAggregation}


def secure_rounds(mode, vectors, rounds=1, *, halt=None, stage_timeout=0.5, rejoin_grace=0.2, hub=None, **kw):
    """``rounds`` aggregation rounds of the same vectors over the in-memory hub, as the aggregator runs them.

    ``halt`` maps a client to ``{round: stage}`` (or one stage, meaning round 0): it stops silently before
    sending that stage's message in that round, as if it crashed, and comes back for the next round;
    ``(stage, "exit")`` makes it stop for good. Returns ``[(sum, contributors), ...]`` per round from the
    aggregator, or raises its error.
    """
    names = sorted(vectors)
    halt = {n: (h if isinstance(h, dict) else {0: h}) for n, h in (halt or {}).items()}
    hub = hub or MemoryHub([AGG, *names])
    params = HomoParams(mode=mode, rounds=rounds, stage_timeout=stage_timeout, client_timeout=10.0,
                        rejoin_grace=rejoin_grace, **kw)
    out, errors = [], {}

    def client(name):
        ch = hub.channel(name, default_timeout=10)
        sub = _SUB[mode](name, AGG, params, names)
        sched = {r: (h if isinstance(h, tuple) else (h, None)) for r, h in halt.get(name, {}).items()}
        first = sched.get(0, (None, None))[0]
        try:
            if mode == "secagg":
                if not sub.setup(ch, halt_before=first if first in (Stage.ADVERTISE, Stage.SHARES) else None):
                    return
            elif mode == "ckks":
                if not sub.setup(ch, halt_before=first if first == Stage.KEY_ADVERTISE else None):
                    return
            for r in range(rounds):
                start = sub.session.recv(ch, AGG, Stage.START, r=r)
                stage, then = sched.get(r, (None, None))
                if mode == "plain":
                    if stage is None:
                        sub.submit(ch, r, vectors[name], start["aggregation"])
                else:
                    sub.submit(ch, r, vectors[name], start["aggregation"], halt_before=stage)
                if then == "exit":
                    return
        except PeerError:
            pass  # the aggregator failed the round: reported below
        except Exception as exc:  # noqa: BLE001
            errors[name] = exc

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    ch = hub.channel(AGG, default_timeout=10)
    agg = _AGGR[mode](params, names, AGG)
    dim = len(next(iter(vectors.values())))
    try:
        members = agg.setup(ch)
        for r in range(rounds):
            extras = agg.start_payloads(r, members, has_next=r + 1 < rounds)
            send_all(agg.session, ch, Stage.START, r, {p: {"round": r, "stop": False, "params": np.zeros(1),
                                              "aggregation": extras[p]} for p in members}, background=agg.absent)
            total, who = agg.aggregate(ch, r, members, dim)
            agg.absent = set(members) - set(who)
            out.append((total, who))
    except Exception:
        ch.abort("aggregator failed")
        raise
    finally:
        for t in threads:
            t.join(15)
    assert not errors, errors
    return out


def secure_sum(mode, vectors, **kw):
    """One aggregation round; clients in ``halt`` stop before that stage. Returns (sum, contributors)."""
    return secure_rounds(mode, vectors, 1, **kw)[0]


def _vectors(rng, n, d=40, scale=1000.0):
    return {f"bank{i}": rng.normal(0, scale, d) for i in range(n)}


def _fixed(x, frac_bits=24):
    return np.rint(x * 2.0**frac_bits) / 2.0**frac_bits


@pytest.mark.parametrize("n", [2, 3, 5])
def test_secagg_sum_equals_plaintext_sum_exactly(rng, n):
    vecs = _vectors(rng, n)
    total, who = secure_sum("secagg", vecs)
    assert who == sorted(vecs)
    assert np.array_equal(total, np.sum([_fixed(v) for v in vecs.values()], axis=0))
    assert np.max(np.abs(total - np.sum(list(vecs.values()), axis=0))) <= n * 2.0**-25


def test_ckks_sum_within_stated_precision(rng):
    vecs = _vectors(rng, 3, d=3000, scale=1e4)  # more than one ciphertext (2048 slots)
    total, who = secure_sum("ckks", vecs)
    assert who == sorted(vecs)
    assert np.max(np.abs(total - np.sum(list(vecs.values()), axis=0))) < 1e-4


def test_plain_sum(rng):
    vecs = _vectors(rng, 3)
    total, _ = secure_sum("plain", vecs)
    assert np.allclose(total, np.sum(list(vecs.values()), axis=0), rtol=0, atol=1e-9)


# (stage at which clients vanish, whether their masked input made it into the sum)
DROP_STAGES = [
    (Stage.ADVERTISE, False),
    (Stage.SHARES, False),  # before key sharing finished: Flower SecAgg+ abandons the round here
    (Stage.MASKED, False),
    (Stage.REVEAL, True),
]


@pytest.mark.parametrize("stage, included", DROP_STAGES, ids=[s.value for s, _ in DROP_STAGES])
@pytest.mark.parametrize("n_drop", [1, 2])
def test_secagg_dropouts_at_each_stage_give_the_survivors_sum(rng, stage, included, n_drop):
    vecs = _vectors(rng, 5)  # n = 5, t = 3: up to 2 may vanish
    dropped = ["bank1", "bank3"][:n_drop]
    total, who = secure_sum("secagg", vecs, halt={d: stage for d in dropped})
    expect_in = sorted(vecs) if included else [b for b in sorted(vecs) if b not in dropped]
    assert who == expect_in
    assert np.array_equal(total, np.sum([_fixed(vecs[b]) for b in expect_in], axis=0))


def test_secagg_dropouts_at_two_different_stages(rng):
    vecs = _vectors(rng, 5)
    total, who = secure_sum("secagg", vecs, halt={"bank0": Stage.MASKED, "bank4": Stage.REVEAL})
    assert who == ["bank1", "bank2", "bank3", "bank4"]
    assert np.array_equal(total, np.sum([_fixed(vecs[b]) for b in who], axis=0))


def _reveals_by_round(hub):
    """{round: (clients whose self-mask shares were revealed, clients whose pairwise-seed shares were revealed)}."""
    out: dict[int, tuple[set, set]] = {}
    for sender, receiver, tag, payload in hub.captured:
        if tag.endswith("/reveal"):
            r = int(tag.split("/")[0].split("-")[1])
            msg = serde.decode(payload)
            selfs, pairs = out.setdefault(r, (set(), set()))
            selfs |= set(msg["self_shares"])
            pairs |= set(msg["pair_shares"])
    return out


# (halt schedule of bank1, contributors per round): drops on both sides of the pipelined boundary, where a
# client's upload of round r carries its shares for round r+1
PIPELINE_CASES = {
    # uploads round 0 (with its round-1 shares), dies before revealing: in round 0 (self mask reconstructed);
    # in round 1 it is in U2 but never uploads (pairwise seeds of round 1 reconstructed); then out for good
    "dies-after-upload": ({0: (Stage.REVEAL, "exit")}, [[0, 1, 2, 3, 4], [0, 2, 3, 4], [0, 2, 3, 4]]),
    # withholds its round-0 upload, so it has no shares for round 1: left out of round 1, it answers START(1)
    # with shares for round 2 and is back in round 2
    "lost-then-back": ({0: Stage.MASKED}, [[0, 2, 3, 4], [0, 2, 3, 4], [0, 1, 2, 3, 4]]),
    # drops before revealing in round 0 but stays alive: its round-1 shares arrived, so it is in round 1
    "reveal-drop-stays": ({0: Stage.REVEAL}, [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]),
    # lost at upload in round 1 while its round-0 self mask was revealed; back in round 3
    "survivor-then-lost": ({1: Stage.MASKED, 2: Stage.SHARES}, [[0, 1, 2, 3, 4], [0, 2, 3, 4], [0, 2, 3, 4],
                                                                [0, 2, 3, 4]]),
}


@pytest.mark.parametrize("case", list(PIPELINE_CASES))
def test_secagg_dropouts_across_the_pipelined_boundary(rng, case):
    schedule, expected = PIPELINE_CASES[case]
    vecs = _vectors(rng, 5)
    hub = MemoryHub([AGG, *sorted(vecs)])
    rounds = secure_rounds("secagg", vecs, len(expected), halt={"bank1": schedule}, hub=hub)
    for r, ((total, who), want) in enumerate(zip(rounds, expected)):
        want = [f"bank{i}" for i in want]
        assert who == want, r
        assert np.array_equal(total, np.sum([_fixed(vecs[b]) for b in want], axis=0)), r
    # Bonawitz: in no round does the aggregator get both kinds of shares of one client
    for r, (selfs, pairs) in _reveals_by_round(hub).items():
        assert not selfs & pairs, (r, selfs & pairs)


def test_secagg_steady_state_round_is_two_round_trips(rng):
    vecs = _vectors(rng, 3)
    hub = MemoryHub([AGG, *sorted(vecs)])
    secure_rounds("secagg", vecs, 3, hub=hub)
    sent = [(r, t) for s, r, t, _ in hub.captured if s == "bank1"]
    # keys once per job (straight to each other client, and to the aggregator); then each round one upload
    # (carrying the next round's shares) and one reveal
    assert sorted(sent[:2]) == [("bank0", "setup/direct"), ("bank2", "setup/direct")]
    assert [t for _, t in sent[2:]] == ["setup/advertise", "round-0/shares", "round-0/masked", "round-0/reveal",
                                        "round-1/masked", "round-1/reveal", "round-2/masked", "round-2/reveal"]
    assert all(r == AGG for r, _ in sent[2:])
    to_bank1 = [(s, t) for s, r, t, _ in hub.captured if r == "bank1"]
    assert sorted(to_bank1[:2]) == [("bank0", "setup/direct"), ("bank2", "setup/direct")]
    assert [t for _, t in to_bank1[2:]] == ["setup/roster"] + [f"round-{r}/{m}" for r in range(3)
                                                               for m in ("start", "unmask")]


def test_secagg_masks_are_fresh_every_round(rng):
    vecs = _vectors(rng, 3)
    hub = MemoryHub([AGG, *sorted(vecs)])
    secure_rounds("secagg", vecs, 2, hub=hub)
    masked = [serde.decode(p)["masked"] for s, _, t, p in hub.captured if s == "bank1" and t.endswith("/masked")]
    assert len(masked) == 2 and not np.any(masked[0] == masked[1])


@pytest.mark.parametrize("stage", [Stage.ADVERTISE, Stage.SHARES, Stage.MASKED, Stage.REVEAL],
                         ids=lambda s: s.value)
def test_secagg_fails_clearly_below_threshold(rng, stage):
    vecs = _vectors(rng, 5)
    with pytest.raises(RoundFailed, match=rf"only 2 of 5 clients remain at stage '{stage.value}'; at least 3"):
        secure_sum("secagg", vecs, halt={b: stage for b in ["bank0", "bank2", "bank4"]})


@pytest.mark.parametrize("mode", ["ckks", "plain"])
def test_other_modes_tolerate_upload_dropouts(rng, mode):
    vecs = _vectors(rng, 3)
    stage = Stage.ENCRYPTED if mode == "ckks" else Stage.UPDATE
    total, who = secure_sum(mode, vecs, halt={"bank2": stage})
    assert who == ["bank0", "bank1"]
    assert np.allclose(total, vecs["bank0"] + vecs["bank1"], atol=1e-4)


def test_ckks_decryptor_dropout_falls_back_to_the_next(rng):
    vecs = _vectors(rng, 3)
    total, _ = secure_sum("ckks", vecs, halt={"bank0": Stage.DECRYPTED})
    assert np.allclose(total, np.sum(list(vecs.values()), axis=0), atol=1e-4)


def test_masked_upload_is_indistinguishable_from_uniform(rng):
    d = 4096
    vecs = {f"bank{i}": rng.normal(0, 2.0, d) for i in range(3)}
    hub = MemoryHub([AGG, *sorted(vecs)])
    secure_sum("secagg", vecs, hub=hub)
    [(_, _, payload)] = [(r, t, p) for r, t, p in hub.sent_by("bank1") if t.endswith("/masked")]
    masked = serde.decode(payload)["masked"]
    unmasked = sa.quantize(vecs["bank1"], clip=2.0**24, frac_bits=24)

    def pvalues(u):
        top = (u >> np.uint64(56)).astype(np.int64)
        chi = stats.chisquare(np.bincount(top, minlength=256)).pvalue
        ks = stats.kstest(u.astype(np.float64) / 2.0**64, "uniform").pvalue
        return chi, ks

    assert min(pvalues(masked)) > 1e-4
    assert max(pvalues(unmasked)) < 1e-10  # the test has power: the raw quantized update fails it


@pytest.mark.parametrize("mode, visible", [("plain", True), ("secagg", False), ("ckks", False)])
def test_no_individual_update_crosses_the_wire(rng, mode, visible):
    vecs = _vectors(rng, 3, d=64)
    hub = MemoryHub([AGG, *sorted(vecs)])
    secure_sum(mode, vecs, hub=hub)
    needle = vecs["bank1"].astype("<f8").tobytes()[:64]
    q_needle = sa.quantize(vecs["bank1"], clip=2.0**24, frac_bits=24).astype("<u8").tobytes()[:64]
    seen = any(needle in p or q_needle in p for _, _, _, p in hub.captured)
    assert seen == visible


def test_ckks_aggregator_gets_no_secret_key(rng):
    import tenseal as ts

    vecs = _vectors(rng, 3)
    hub = MemoryHub([AGG, *sorted(vecs)])
    secure_sum("ckks", vecs, hub=hub)
    [payload] = [p for s, r, t, p in hub.captured if t.endswith("setup/context")]
    assert not ts.context_from(serde.decode(payload)["public_context"]).is_private()


# -- spec -------------------------------------------------------------------

def test_spec_every_message_has_one_sender_and_one_receiver():
    for stage, msg in spec.SPEC.messages.items():
        if stage in (Stage.DIRECT, Stage.KEY_DIRECT):  # keys go peer to peer, so the aggregator cannot swap them
            assert (msg.sender, msg.receiver) == ("client", "client"), stage
        else:
            assert {msg.sender, msg.receiver} == {"client", "aggregator"}, stage
        assert msg.fields
    assert set(spec.SPEC.messages) == set(Stage)


@pytest.mark.parametrize("stage, payload, match", [
    (Stage.START, {"round": True, "stop": False, "params": np.zeros(3), "aggregation": {}}, "'round' must be int"),
    (Stage.START, {"round": 1, "stop": False, "aggregation": {}}, "missing keys"),
    (Stage.START, {"round": 1, "stop": False, "params": np.zeros(3), "aggregation": {}, "x": 1}, "unexpected keys"),
    (Stage.START, {"round": 1, "stop": 0, "params": np.zeros(3), "aggregation": {}}, "'stop' must be bool"),
    (Stage.MASKED, {"masked": np.zeros(3), "next_sealed": {}}, "uint64"),
    (Stage.FORWARD, {"included": 1, "clients": [], "sealed": {}, "next": []}, "'included' must be bool"),
    (Stage.ROSTER, {"dropped": False}, "missing keys"),
    (Stage.ADVERTISE, [b"k"], "expected dict"),
])
def test_expect_rejects_malformed_messages(stage, payload, match):
    with pytest.raises(ProtocolError, match=match):
        spec.SPEC.check(stage, payload)


def test_expect_rejects_wrong_sender_role():
    with pytest.raises(ProtocolError, match="expected the aggregator"):
        spec.SPEC.check(Stage.ROSTER, {"dropped": True}, sender_role="client")
    # a client posing as the aggregator: refused before anything is read
    hub = MemoryHub([AGG, "bank0", "bank1"])
    s = spec.session("bank0", AGG, ["bank0", "bank1"], "secagg")
    with pytest.raises(ProtocolError, match="expected the aggregator"):
        s.recv(hub.channel("bank0"), "bank1", Stage.ROSTER)


@pytest.mark.parametrize("mode, steps, bad", [
    # a client that answers UNMASK before it sent its masked input (it would reveal shares for a round it
    # never joined), reveals twice, or submits an update before any START
    ("secagg", [("send", Stage.DIRECT, "bank1"), ("recv", Stage.DIRECT, "bank1")], None),
    ("secagg", [("send", Stage.ADVERTISE, AGG), ("recv", Stage.ROSTER, AGG), ("send", Stage.SHARES, AGG),
                ("recv", Stage.START, AGG)], ("send", Stage.REVEAL, AGG)),
    ("secagg", [("send", Stage.ADVERTISE, AGG), ("recv", Stage.ROSTER, AGG), ("send", Stage.SHARES, AGG),
                ("recv", Stage.START, AGG), ("send", Stage.MASKED, AGG), ("recv", Stage.UNMASK, AGG),
                ("send", Stage.REVEAL, AGG)], ("send", Stage.REVEAL, AGG)),
    ("plain", [], ("send", Stage.UPDATE, AGG)),
    ("ckks", [("send", Stage.KEY_ADVERTISE, AGG)], ("recv", Stage.DECRYPT, AGG)),
])
def test_stage_transitions_are_checked(mode, steps, bad):
    """Flower's check_stage: the declared transitions of each mode hold per link; anything else is refused."""
    s = spec.session("bank0", AGG, ["bank0", "bank1"], mode)
    for op, stage, peer in steps:
        s._step(peer, stage, sending=op == "send")
    if bad is not None:
        op, stage, peer = bad
        with pytest.raises(ProtocolError, match="out of order"):
            s._step(peer, stage, sending=op == "send")


@pytest.mark.parametrize("params, match", [
    ({"mode": "secagg", "threshold": 2}, "strict majority"),
    ({"mode": "plain", "threshold": 5}, "exceeds the number of clients"),
    ({"mode": "secagg", "clip": 2.0**50}, "ring overflow"),
])
def test_invalid_thresholds_and_rings(params, match):
    with pytest.raises(ConfigError, match=match):
        HomoParams(**params).threshold_for(4)


def test_parameters_are_validated_all_at_once():
    with pytest.raises(ConfigError, match="2 invalid parameters") as exc:
        HomoParams.from_dict({"rounds": 0, "mode": "magic"})
    assert any("'mode' parameter of homo" in p for p in exc.value.problems)


# -- FedAvg -----------------------------------------------------------------

def _synthetic_banks(rng, n_banks=3, rows=600, f=6):
    w = rng.normal(0, 1, f)
    out = {}
    for i in range(n_banks):
        X = rng.normal(0, 1, (rows, f))
        y = (rng.random(rows) < 1 / (1 + np.exp(-(X @ w)))).astype(int)
        out[f"bank{i}"] = Table.from_arrays(f"bank{i}", [f"{i}-{j}" for j in range(rows)], X,
                                            [f"x{k}" for k in range(f)], y)
    return out


def _fit_all(banks, *, eval_table=None, halt_schedule=None, **kw):
    names = sorted(banks)
    halt_schedule = halt_schedule or {}

    def role(name):
        def fn(ch):
            est = FedAvgClassifier(**kw)
            if name == AGG:
                return est.fit(ch, eval_table, role="aggregator", clients=names, aggregator=AGG,
                               n_features=banks[names[0]].X.shape[1])
            if name in halt_schedule:
                _install_halts(halt_schedule[name])
            return est.fit(ch, banks[name], role="client", clients=names, aggregator=AGG)
        return fn

    return run_local({n: role(n) for n in [AGG, *names]}, timeout=60)


_halts = threading.local()


def _install_halts(schedule):
    _halts.schedule = schedule


_orig_submit = SecAggSubmitter.submit


def _scheduled_submit(self, ch, r, vector, extra, *, halt_before=None):
    schedule = getattr(_halts, "schedule", {})
    return _orig_submit(self, ch, r, vector, extra, halt_before=schedule.get(r, halt_before))


@pytest.mark.parametrize("model", ["logistic", "mlp"])
@pytest.mark.parametrize("mode", ["secagg", "ckks"])
def test_fedavg_private_modes_match_plain(rng, model, mode):
    banks = _synthetic_banks(rng)
    kw = dict(model=model, hidden=(8,), rounds=4, local_epochs=1)
    plain = _fit_all(banks, mode="plain", **kw)
    private = _fit_all(banks, mode=mode, **kw)
    for party in [AGG, *banks]:
        np.testing.assert_allclose(private[party].params_, plain[party].params_, rtol=0, atol=1e-5)
    assert private[AGG].report_["rounds"] == 4


def test_fedavg_matches_centralized_lr_on_default_credit():
    from sklearn.linear_model import LogisticRegression

    banks = {f"bank{i}": load_table(data_path("default_credit", f"homo_bank{i}.csv"), party=f"bank{i}",
                                    label_column="y") for i in (1, 2, 3)}
    test = load_table(data_path("default_credit", "homo_test.csv"), party=AGG, label_column="y")
    res = _fit_all(banks, eval_table=test, mode="secagg", rounds=10)
    X = np.vstack([b.X for b in banks.values()])
    y = np.concatenate([b.y for b in banks.values()])
    from fedcredit.models.metrics import auc

    central = auc(test.y, LogisticRegression(max_iter=1000).fit(X, y).predict_proba(test.X)[:, 1])
    assert abs(res[AGG].report_["test_auc"] - central) < 0.002
    assert np.allclose(res["bank1"].predict_proba(test.X), res[AGG].predict_proba(test.X))


def test_client_that_drops_mid_training_rejoins_two_rounds_later(rng, monkeypatch):
    # bank1 withholds its round-1 upload (and with it its shares for round 2): left out of round 2, it answers
    # START(2) with shares for round 3 -- but halts that too; it answers START(3) and is back in round 4
    monkeypatch.setattr(SecAggSubmitter, "submit", _scheduled_submit)
    banks = _synthetic_banks(rng, n_banks=3)
    res = _fit_all(banks, halt_schedule={"bank1": {1: Stage.MASKED, 2: Stage.SHARES}}, mode="secagg", rounds=5,
                   stage_timeout=0.5, rejoin_grace=0.5)
    hist = res[AGG].report_["history"]
    assert [h["clients"] for h in hist] == [["bank0", "bank1", "bank2"], ["bank0", "bank2"], ["bank0", "bank2"],
                                            ["bank0", "bank2"], ["bank0", "bank1", "bank2"]]
    assert res[AGG].report_["dropped"] == {"masked": ["bank1"], "shares": ["bank1"]}
    assert res["bank1"].report_["rounds_included"] == 2
    np.testing.assert_array_equal(res["bank1"].params_, res[AGG].params_)


def test_early_stopping_on_clients_validation_splits(rng):
    banks = _synthetic_banks(rng)
    res = _fit_all(banks, mode="secagg", rounds=30, patience=2, validation_fraction=0.2, learning_rate=0.5)
    rep = res[AGG].report_
    assert rep["rounds"] < 30
    assert all("val_loss" in h for h in rep["history"])
    assert rep["best_round"] == rep["rounds"] - 2 - 2  # client-side validation lags one round


def test_step_runs_through_the_registry(rng, tmp_path):
    from fedcredit.protocols.homo import MODEL_FILE, load_model

    banks = _synthetic_banks(rng)
    roles = {AGG: "aggregator", **{b: "client" for b in banks}}

    def role(name):
        def fn(ch):
            ctx = StepContext(job_id="j", step="fedavg", kind="homo", party=name, roles=roles,
                              params={"mode": "secagg", "rounds": 2, "n_features": 6}, channel=ch,
                              data=banks.get(name), artifacts=FileArtifacts(tmp_path / name))
            return get_step("homo")(ctx), ctx.state

        return fn

    res = run_local({n: role(n) for n in roles}, timeout=60)
    report, state = res[AGG]
    assert report["rounds"] == 2 and report["mode"] == "secagg" and "params" not in report
    np.testing.assert_array_equal(state["homo"]["params"], res["bank0"][1]["homo"]["params"])
    assert run is get_step("homo")
    # every party saved the same global model; a client also reports it on its own rows
    saved = load_model(tmp_path / AGG / MODEL_FILE)
    np.testing.assert_array_equal(saved.params_, state["homo"]["params"])
    np.testing.assert_array_equal(load_model(tmp_path / "bank1" / MODEL_FILE).params_, saved.params_)
    X = banks["bank0"].X
    assert res["bank0"][0]["train_auc"] == pytest.approx(
        metrics.auc(banks["bank0"].y, saved.predict_proba(X)[:, 1]))


# -- key authentication (a malicious aggregator substituting public keys) ---------------------------------

class _KeySwappingChannel:
    """The channel of a malicious aggregator that runs a man-in-the-middle on the clients' key set-up.

    In the key roster it forwards to client ``w`` it replaces the public key of every victim ``v != w`` by a key
    of its own; ``w`` still sees its own key, so a client that checks only its own entry notices nothing.
    """

    def __init__(self, ch, victims):
        self._ch, self.victims = ch, set(victims)
        self.fakes = {v: sa.KeyPair.generate() for v in self.victims}
        self.real: dict[str, bytes] = {}  # client -> the public key it advertised

    def send(self, peer, tag, obj):
        if tag in (spec.SPEC.tag(Stage.ROSTER), spec.SPEC.tag(Stage.KEY_ROSTER)) and obj.get("public_keys"):
            keys = list(obj["public_keys"])
            for i, v in enumerate(obj["clients"]):
                self.real[v] = obj["public_keys"][i]
                if v in self.victims and v != peer:
                    keys[i] = self.fakes[v].public
            obj = {**obj, "public_keys": keys}
        return self._ch.send(peer, tag, obj)

    def __getattr__(self, name):
        return getattr(self._ch, name)


def _key_setup(mode, *, wrap=None, n=3):
    """Run the key set-up of ``mode``; ``wrap`` maps a party to a function wrapping its channel.

    Returns (hub, the aggregator's channel, {client: error}).
    """
    from fedcredit.errors import FedcreditError

    wrap = wrap or {}
    names = [f"bank{i}" for i in range(n)]
    hub = MemoryHub([AGG, *names])
    params = HomoParams(mode=mode, rounds=1, stage_timeout=1.0, client_timeout=10.0)
    errors = {}

    def client(name):
        ch = wrap.get(name, lambda c: c)(hub.channel(name, default_timeout=10))
        try:
            _SUB[mode](name, AGG, params, names).setup(ch)
        except FedcreditError as exc:
            errors[name] = exc
            ch.abort(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in names]
    for t in threads:
        t.start()
    agg = wrap.get(AGG, lambda c: c)(hub.channel(AGG, default_timeout=10))
    try:
        _AGGR[mode](params, names, AGG).setup(agg)
    except FedcreditError as exc:  # the clients refused to go on
        agg.abort(f"{type(exc).__name__}: {exc}")
    for t in threads:
        t.join(15)
    return hub, agg, errors


def _secrets_opened_by_the_attacker(mode, hub, mitm, names):
    """What the aggregator can open with its substituted keys: sealed secagg shares or the sealed CKKS secret key."""
    from fedcredit.errors import DecryptionError
    from fedcredit.protocols.homo._ckks import CkksKeys
    from fedcredit.protocols.homo.client import _aad

    opened = []
    for w, receiver, tag, payload in hub.captured:
        if receiver != AGG or tag not in (spec.SPEC.tag(Stage.SHARES, r=0), spec.SPEC.tag(Stage.CONTEXT)):
            continue
        for v, sealed in serde.decode(payload)["sealed"].items():
            if v not in mitm.fakes:
                continue
            secret = mitm.fakes[v].agree(v, w, mitm.real[w])  # the pairwise secret w believes it shares with v
            try:
                if mode == "secagg":
                    sa.open_sealed(sa.derive_key(secret, "share-enc"), sealed, _aad(0, names)(w, v))
                else:
                    CkksKeys.from_secret_bytes(sa.open_sealed(sa.derive_key(secret, "ckks-key"), sealed,
                                                              _aad(-1)(w, v)))
            except DecryptionError:
                continue
            opened.append((w, v))
    return opened


@pytest.mark.parametrize("mode", ["secagg", "ckks"])
@pytest.mark.parametrize("victims", [["bank1"], ["bank0", "bank1", "bank2"]], ids=["one-key", "all-keys"])
def test_aggregator_substituting_public_keys_is_detected(mode, victims):
    # the attack: with its own key in place of v's, the aggregator shares a secret with every client w that
    # deals to v, opens w's sealed shares for v (secagg: t of them unmask w's update) or the CKKS secret key
    names = ["bank0", "bank1", "bank2"]
    hub, mitm, errors = _key_setup(mode, wrap={AGG: lambda ch: _KeySwappingChannel(ch, victims)})
    fooled = [w for w in names if set(victims) - {w}]  # clients shown a substituted key
    for w in fooled:
        assert isinstance(errors.get(w), ProtocolError), (w, errors.get(w))
        assert "aggregator 'agg'" in str(errors[w]) and "substitut" in str(errors[w])
    assert _secrets_opened_by_the_attacker(mode, hub, mitm, names) == []
    # nothing was sealed under a substituted key: no fooled client sent shares or a sealed CKKS key
    assert not [t for s, r, t, _ in hub.captured if s in fooled and r == AGG
                and t in (spec.SPEC.tag(Stage.SHARES, r=0), spec.SPEC.tag(Stage.CONTEXT))]


@pytest.mark.parametrize("mode", ["secagg", "ckks"])
def test_key_substitution_opens_the_secrets_of_clients_that_trust_the_roster(mode, monkeypatch):
    # the attack test has power: clients that take the keys from the aggregator's roster (the previous code)
    # seal their shares / the CKKS secret key under the aggregator's keys, and it opens them
    from fedcredit.protocols.homo import client as client_mod

    def trust_the_roster(ch, me, agg, stage, members, forwarded, *rest):
        return dict(zip(members, forwarded))

    monkeypatch.setattr(client_mod, "_authenticated_keys", trust_the_roster)
    names = ["bank0", "bank1", "bank2"]
    hub, mitm, errors = _key_setup(mode, wrap={AGG: lambda ch: _KeySwappingChannel(ch, names)})
    opened = _secrets_opened_by_the_attacker(mode, hub, mitm, names)
    if mode == "secagg":  # every client's shares for every other: t of them give each self mask and pair seed
        assert sorted(opened) == [(w, v) for w in names for v in names if v != w]
    else:  # the dealer's sealed CKKS secret key, for each other client
        assert sorted(opened) == [("bank0", "bank1"), ("bank0", "bank2")]


@pytest.mark.parametrize("mode", ["secagg", "ckks"])
def test_client_without_a_link_to_another_client_fails_at_start(mode):
    from fedcredit.transport.base import Channel

    hub = MemoryHub([AGG, "bank0", "bank1", "bank2"])
    ch = Channel(hub.backend("bank0", peers=[AGG, "bank2"]))  # bank1 is not among bank0's peers
    sub = _SUB[mode]("bank0", AGG, HomoParams(mode=mode), ["bank0", "bank1", "bank2"])
    with pytest.raises(ConfigError, match=r"client 'bank0' cannot reach client\(s\) 'bank1' directly.*\[peers\]"):
        sub.setup(ch)
    assert hub.captured == []  # it fails before sending anything


class _NoRouteTo:
    """A client's channel on which sends to one peer fail, as when the network between two clients is cut."""

    def __init__(self, ch, blocked):
        self._ch, self.blocked = ch, blocked

    def send(self, peer, tag, obj):
        if peer == self.blocked:
            raise PeerError(f"peer {peer!r} is unreachable (connection refused)", peer=peer)
        return self._ch.send(peer, tag, obj)

    def __getattr__(self, name):
        return getattr(self._ch, name)


@pytest.mark.parametrize("mode", ["secagg", "ckks"])
def test_clients_that_cannot_reach_each_other_fail_the_key_set_up_clearly(mode):
    _, _, errors = _key_setup(mode, wrap={"bank1": lambda ch: _NoRouteTo(ch, "bank0")})
    what = "roster" if mode == "secagg" else "key roster"
    assert isinstance(errors["bank1"], PeerError)
    assert str(errors["bank1"]).startswith(
        f"homo {what}: client 'bank1' could not send its public key to client 'bank0' directly")
    assert isinstance(errors["bank0"], PeerError)
    assert str(errors["bank0"]).startswith(f"homo {what}: no public key arrived directly from client 'bank1'")


@pytest.mark.parametrize("clip, rows, where", [(500.0, 600, "has more rows than clip=500"),
                                               (700.0, 600, "round 0: client 'bank[0-2]' cannot submit")])
def test_secagg_refuses_updates_beyond_clip_instead_of_a_wrong_model(rng, clip, rows, where):
    # before: n (600 rows) or n * theta clipped to +-clip in the ring, so sum(n * theta) / sum(n) was silently
    # wrong (a bank with millions of rows and the default clip 2**24 had the same problem)
    banks = _synthetic_banks(rng, rows=rows)
    for b in banks.values():
        b.X[:] *= 10.0  # large features: |theta| well above 1 after one epoch, so n * theta > clip
    with pytest.raises(ConfigError, match=rf"homo secagg.*{where}.*raise 'clip'"):
        _fit_all(banks, mode="secagg", rounds=2, clip=clip, learning_rate=1.0)
