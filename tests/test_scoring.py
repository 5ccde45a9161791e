"""Federated scoring with three in-process mTLS parties: equivalence, privacy, authorization, revocation, audit, export.

bank = guest (label holder); chain, gov = hosts. Models: SecureBoost (4 trees,
depth 3, trained federatedly with a small test key) and LR (per-party parts).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time

import grpc
import numpy as np
import pytest
from conftest import data_path

from fedcredit.certs import tls_server_name
from _audit_tamper import rewrite_record  # noqa: E402
from fedcredit.audit import verify
from fedcredit.errors import PeerError, PolicyError, ProtocolError
from fedcredit.protocols.hetero_lr import combine, partial_score
from fedcredit.protocols.scoring import spec
from fedcredit.protocols.scoring.host import lr_partial
from fedcredit.serving import RateLimiter, predict_merged
from fedcredit.serving.heads import fetch_held_heads
from fedcredit.transport import scoring as tscoring

from _scoring_fixture import HOSTS, LR, PARTIES, SBT, Fed, columns, missing_at_gov, rows, scoring_policy, tables, train

AUTH = {"consent_id": "consent-2024-000123", "purpose": "loan-application"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data = data_path("credit3", "bank.csv").parents[1]
    root = tmp_path_factory.mktemp("scoring")
    host_pol = scoring_policy(requesters=["bank"], purposes=["loan-application"], max_requests_per_minute=100000,
                              head_exchange_seconds=0.0)
    bank_pol = scoring_policy(purposes=["loan-application", "marketing"], head_exchange_seconds=0.0)
    f = Fed(root, data, {"bank": bank_pol, "chain": host_pol, "gov": host_pol})
    f.tables = tables(data)
    f.info = train(root, f.tables)
    f.start()
    try:
        yield f
    finally:
        f.stop()


def _score(fed, model, ids, auth=AUTH):
    return fed.parties["bank"].scoring.score("bank", model, ids, auth)[0]


def _approve_all(fed, model):
    for h in HOSTS:
        fed.parties[h].scoring.approve_export(h, model, "bank", "test")


# ------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("which", ["train", "new", "missing_at_gov"])
def test_tree_scores_equal_central_merged_model_exactly(fed, which):
    ids = {"train": fed.info["ids"][:300],
           "new": sorted(set(fed.tables["bank"].ids) & set(fed.tables["chain"].ids) & set(fed.tables["gov"].ids))[2000:2300],
           "missing_at_gov": missing_at_gov(fed.tables)}[which]
    assert ids
    got = _score(fed, SBT, ids)
    _approve_all(fed, SBT)
    merged = json.loads(fed.parties["bank"].scoring.export("bank", SBT))
    central = predict_merged(merged, columns(fed.tables, ids))
    np.testing.assert_array_equal(got, central)
    assert np.all((got > 0) & (got < 1))


@pytest.mark.parametrize("n", [1, 257])
def test_lr_scores_equal_central_within_1e9(fed, n):
    ids = fed.info["ids"][:n]
    got = _score(fed, LR, ids)
    parts = fed.info["parts"]
    t = {p: fed.tables[p].take([list(fed.tables[p].ids).index(i) for i in ids]) for p in PARTIES}
    central = combine(partial_score(t["bank"], dict(parts["bank"])),
                      [partial_score(t[h], dict(parts[h])) for h in HOSTS])
    np.testing.assert_allclose(got, central, rtol=0, atol=1e-9)


def test_lr_id_missing_at_a_host_contributes_zero(fed):
    ids = missing_at_gov(fed.tables, 5)
    got = _score(fed, LR, ids)
    parts = fed.info["parts"]
    z = lr_partial(parts["bank"], rows(fed.tables["bank"], ids)) + lr_partial(parts["chain"], rows(fed.tables["chain"], ids))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=0, atol=1e-9)


def test_applicant_features_supplied_by_the_bank(fed):
    ids = fed.info["ids"][:10]
    X = rows(fed.tables["bank"], ids)
    names = list(fed.tables["bank"].columns)
    got, _ = fed.parties["bank"].scoring.score("bank", SBT, ids, AUTH, X, names)
    np.testing.assert_array_equal(got, _score(fed, SBT, ids))
    with pytest.raises(Exception, match="lacks the model's feature"):
        fed.parties["bank"].scoring.score("bank", SBT, ids, AUTH, X[:, :2], names[:2])


# ------------------------------------------------------------------ privacy
class _Recorder:
    """Wraps one stub method: records each request and, when the caller takes it, the reply (wire bytes)."""

    def __init__(self, multi, host, calls):
        self.multi, self.host, self.calls = multi, host, calls

    def future(self, request, timeout=None):
        fut = self.multi.future(request, timeout=timeout)
        call = {"host": self.host, "request": request, "request_bytes": request.SerializeToString()}
        self.calls.append(call)

        class _Future:
            def result(_self):
                reply = fut.result()
                call.update(reply=reply, reply_bytes=reply.SerializeToString())
                return reply

        return _Future()


@pytest.fixture
def capture(monkeypatch):
    """Every Contribute/Decide the bank sends, and every answer it receives, as bytes on the wire."""
    calls = []
    orig_init = tscoring.ScoringClient.__init__

    def init(self, channel, peer, **kw):
        orig_init(self, channel, peer, **kw)
        stub = self._s
        for name in ("Contribute", "Decide"):
            setattr(stub, name, _Recorder(getattr(stub, name), peer, calls))

    monkeypatch.setattr(tscoring.ScoringClient, "__init__", init)

    class View:
        calls = None

        @property
        def requests(self):
            return [(c["host"], c["request_bytes"], c["request"]) for c in calls]

        @property
        def replies(self):
            return [(c["host"], c["reply_bytes"], c["reply"]) for c in calls if "reply" in c]

        @property
        def answered(self):
            return [c for c in calls if "reply" in c]

    view = View()
    view.calls = calls
    return {"view": view}


@pytest.mark.parametrize("model", [SBT, LR])
def test_bank_sees_no_host_partial_or_feature_and_hosts_see_no_score(fed, capture, model):
    ids = fed.info["ids"][:64]
    X_bank = rows(fed.tables["bank"], ids)
    scores, _ = fed.parties["bank"].scoring.score("bank", model, ids, AUTH)
    cap = capture["view"]
    assert {p for p, _, _ in cap.replies} == set(HOSTS)
    assert {p for p, _, _ in cap.requests} == set(HOSTS)
    for host, raw, m in cap.replies:
        X = rows(fed.tables[host], ids)
        for v in np.unique(X[~np.isnan(X)])[:200]:
            if abs(v) > 1:  # small integers (codes 1, 2) are bytes anyone could write
                assert np.float64(v).tobytes() not in raw, f"raw feature of {host} on the wire"
        if model == LR:
            partial = lr_partial(fed.info["parts"][host], X)
            masked = np.frombuffer(m.masked, dtype="<u8")
            assert spec.encode_partial(partial).tobytes() not in raw
            assert np.abs(spec.decode_sum([masked]) - partial).min() > 1.0  # uniformly masked, not near the partial
        else:
            assert not getattr(m, "masked", b"")
    for host, raw, _ in cap.requests:
        for s in scores:
            assert np.float64(s).tobytes() not in raw, f"{host} received a score"
        for v in np.unique(X_bank[~np.isnan(X_bank)]):
            if abs(v) > 1:
                assert np.float64(v).tobytes() not in raw, f"{host} received a bank feature value"
        for i in ids:
            assert i.encode() not in raw, f"{host} received a raw id"


def _central_paths(fed, model, ids):
    """Per (row, tree): the host splits on the row's path and their decisions, from a walk with every party's data."""
    guest = fed.parties["bank"].scoring.registry.get(model).part.model
    X_bank = rows(fed.tables["bank"], ids)
    hosts = {}
    for h in HOSTS:
        m = fed.parties[h].scoring.registry.get(model)
        X, _ = m.rows_for_ids(ids)
        hosts[h] = (m.part.model, X, m.feature_index)
    on_path, n_host_splits = {}, 0
    for t, nodes in enumerate(guest.trees):
        by_id = {n.id: n for n in nodes}
        n_host_splits += sum(1 for n in nodes if not n.is_leaf and n.threshold is None)
        for r in range(len(ids)):
            node = by_id[0]
            while not node.is_leaf:
                if node.threshold is not None:
                    x = X_bank[r, node.feature]
                else:
                    hm, X, fi = hosts[node.party]
                    s = hm.splits[node.split_id]
                    x = X[r, fi[s.feature_name or hm.feature_names[s.feature]]]
                    node_thr, node_ml = s.threshold, s.missing_left
                left = (node.missing_left if node.threshold is not None else node_ml) if np.isnan(x) else \
                    x <= (node.threshold if node.threshold is not None else node_thr)
                if node.threshold is None:
                    on_path[(node.party, r, node.split_id)] = bool(left)
                node = by_id[node.left if left else node.right]
    return on_path, n_host_splits


def test_bank_receives_host_decisions_only_on_each_rows_path(fed, capture):
    ids = fed.info["ids"][:200] + missing_at_gov(fed.tables, 20)
    fed.parties["bank"].scoring.score("bank", SBT, ids, AUTH)
    received = {}
    for call in capture["view"].answered:
        host, req, rep = call["host"], call["request"], call["reply"]
        sids, counts, rws = tscoring.queries_from_proto(req.queries, "bank")
        bits = spec.unpack_bits(rep.decisions, len(rws), host)
        for (sid, row), b in zip(zip(np.repeat(sids, counts.astype(int)), rws), bits):
            key = (host, int(row), int(sid))
            assert key not in received, f"{key} asked twice"
            received[key] = bool(b)
    on_path, n_host_splits = _central_paths(fed, SBT, ids)
    assert received == on_path  # every on-path host decision, with its value, and nothing else
    off_path = n_host_splits * len(ids) - len(on_path)
    assert off_path > len(on_path)  # the old protocol sent all of these too
    rounds = _last(fed, "bank", "score.request")["fields"]["rounds"]
    assert rounds <= fed.parties["bank"].scoring.registry.get(SBT).part.extra["forest"].max_depth


def test_round_trips_skip_hosts_with_no_pending_queries_and_close_open_requests(fed, capture):
    # an applicant whose paths reach no split of gov: gov gets the Contribute (authorization, audit) and then,
    # once no path can reach its splits any more, only a closing Decide, not a round of queries
    pool = fed.info["ids"][:300]
    on_path, _ = _central_paths(fed, SBT, pool)
    reached = {r for (h, r, _) in on_path if h == "gov"}
    assert reached, "the model should route some applicants through gov's split"
    ids = [pool[next(r for r in range(len(pool)) if r not in reached)]]
    _, rid = fed.parties["bank"].scoring.score("bank", SBT, ids, AUTH)
    reqs = capture["view"].requests
    kinds = [(h, type(req).__name__) for h, _, req in reqs]
    assert sorted(h for h, k in kinds if k == "ContributeRequest") == sorted(HOSTS)  # every host logs the request
    gov = [req for h, _, req in reqs if h == "gov"]
    assert not gov[0].final  # gov's split was still reachable when the request started
    assert len(gov) == 2 and type(gov[1]).__name__ == "DecideRequest" and gov[1].final
    assert len(gov[1].queries.rows) == 0  # gov was asked nothing: only told the request is done
    for h in HOSTS:  # the hosts drop the request's rows once it is done (the closing Decide is not waited for)
        for _ in range(100):
            if ("bank", rid) not in fed.parties[h].scoring.sessions:
                break
            time.sleep(0.02)
        assert ("bank", rid) not in fed.parties[h].scoring.sessions


def test_single_request_masks_cancel_only_in_sum(fed, capture):
    ids = fed.info["ids"][:8]
    fed.parties["bank"].scoring.score("bank", LR, ids, AUTH)
    a, b = (np.frombuffer(m.masked, dtype="<u8") for _, _, m in capture["view"].replies)
    partial = sum(lr_partial(fed.info["parts"][h], rows(fed.tables[h], ids)) for h in HOSTS)
    np.testing.assert_allclose(spec.decode_sum([a, b]), partial, atol=1e-11)


# ------------------------------------------------------------------ path queries: host-side validation
def _q(sids, counts, rws):
    return spec.TreeQueries(np.array(sids, np.int64), np.array(counts, np.uint32), np.array(rws, np.uint32))


def _open(fed, host="chain", n=10):
    """An open SecureBoost request on ``host`` (a Contribute with final = false); returns (client, request id)."""
    client = tscoring.ScoringClient(fed.parties["bank"].transport.grpc_channel(host), host)
    rid = spec.new_request_id()
    r = client.contribute_async(SBT, rid, spec.id_digests(fed.info["ids"][:n], SBT), AUTH, list(HOSTS),
                                spec.TreeQueries.empty(), False)()
    assert r.kind == "secureboost" and r.n_decisions == 0
    return client, rid


def _chain_splits(fed):
    """Two chain splits of one tree, and one of another tree."""
    splits = fed.parties["chain"].scoring.registry.get(SBT).part.model.splits
    by_tree = {}
    for sid, sp in sorted(splits.items()):
        by_tree.setdefault(sp.tree, []).append(sid)
    same = next(v for v in by_tree.values() if len(v) >= 2)
    other = next(v[0] for t, v in by_tree.items() if v[0] not in same)
    return same[0], same[1], other


@pytest.mark.parametrize("case, match", [
    ("unknown_request", "unknown, finished or expired"),
    ("foreign_split", "not a split of this host"),
    ("row_out_of_range", "the request has 10 rows"),
    ("two_splits_one_tree", "two splits of one tree"),
    ("repeated_split", "repeat a split id"),
    ("counts_mismatch", "counts must be >= 1 and sum"),
    ("other_model", "is for model"),
    ("after_final", "unknown, finished or expired"),
])
def test_malformed_or_unknown_path_queries_are_refused_and_host_keeps_serving(fed, case, match):
    a, b, c = _chain_splits(fed)
    client, rid = _open(fed)
    model, q = SBT, _q([a], [2], [0, 1])
    if case == "unknown_request":
        rid = spec.new_request_id()
    elif case == "foreign_split":
        q = _q([10**9], [1], [0])
    elif case == "row_out_of_range":
        q = _q([a], [1], [10])
    elif case == "two_splits_one_tree":
        q = _q([a, b], [1, 1], [3, 3])
    elif case == "repeated_split":
        q = _q([c, c], [1, 1], [1, 2])
    elif case == "counts_mismatch":
        q = _q([a], [3], [0, 1])
    elif case == "other_model":
        model = LR
    elif case == "after_final":
        assert len(client.decide_async(SBT, rid, _q([a, c], [1, 1], [0, 0]), True)()) == 1
    with pytest.raises(ProtocolError, match=match):
        client.decide_async(model, rid, q, False)()
    rec = _last(fed, "chain", "score.decide")
    assert rec["fields"]["decision"].startswith("refused") and rec["fields"]["requester"] == "bank"
    # a refused request is closed: even a valid query for it is refused now
    with pytest.raises(ProtocolError, match="unknown, finished or expired"):
        client.decide_async(SBT, rid, _q([a], [1], [0]), False)()
    assert len(_score(fed, SBT, fed.info["ids"][:5])) == 5  # the host keeps serving


def test_ragged_path_queries_are_refused(fed):
    from fedcredit._proto import scoring_pb2 as pb
    from fedcredit._proto import scoring_pb2_grpc as pb_grpc

    _, rid = _open(fed)
    stub = pb_grpc.ScoringStub(fed.parties["bank"].transport.grpc_channel("chain"))
    bad = pb.TreeQueries(split_ids=b"\0" * 8, counts=b"\1\0\0\0", rows=b"\0\0\0")
    with pytest.raises(grpc.RpcError) as info:
        stub.Decide(pb.DecideRequest(model_id=SBT, request_id=rid, queries=bad), timeout=5)
    assert "ragged" in info.value.details()
    assert "ragged" in _last(fed, "chain", "score.decide")["fields"]["decision"]
    with pytest.raises(grpc.RpcError, match="unknown, finished or expired"):  # and the request is closed
        stub.Decide(pb.DecideRequest(model_id=SBT, request_id=rid, queries=pb.TreeQueries()), timeout=5)
    assert len(_score(fed, SBT, fed.info["ids"][:2])) == 2


def test_bad_first_round_queries_refuse_the_contribution_and_are_audited(fed):
    client = tscoring.ScoringClient(fed.parties["bank"].transport.grpc_channel("chain"), "chain")
    with pytest.raises(ProtocolError, match="not a split of this host"):
        client.contribute_async(SBT, spec.new_request_id(), spec.id_digests(fed.info["ids"][:3], SBT), AUTH,
                                list(HOSTS), _q([10**9], [1], [0]), False)()
    rec = _last(fed, "chain", "score.contribute")
    assert rec["fields"]["decision"].startswith("refused: ") and "not a split" in rec["fields"]["decision"]


def _toy_session(n=4, n_trees=20):
    from fedcredit.protocols.scoring.host import SplitTable, TreeSession
    from fedcredit.protocols.secureboost.model import HostModel, HostSplit

    hm = HostModel("chain", "bank", ["x"], splits={t: HostSplit(tree=t, feature=0, threshold=0.5, missing_left=True)
                                                   for t in range(n_trees)})
    X = np.array([[0.0], [1.0], [np.nan], [0.5]])[:n]
    return TreeSession(SplitTable(hm, {"x": 0}), X, requester="bank", model_id=SBT)


@pytest.mark.parametrize("bitmap_max", [1 << 24, 0])  # the bitmap check, and the sort for large requests
def test_tree_session_refuses_two_splits_of_one_tree_per_row_and_round(monkeypatch, bitmap_max):
    from fedcredit.protocols.scoring import host

    monkeypatch.setattr(host, "_BITMAP_MAX", bitmap_max)
    from fedcredit.protocols.secureboost.model import HostModel, HostSplit

    hm = HostModel("chain", "bank", ["x"], splits={0: HostSplit(0, 0, 0.5, True), 1: HostSplit(0, 0, 0.7, False),
                                                   2: HostSplit(1, 0, 0.5, True)})
    s = host.TreeSession(host.SplitTable(hm, {"x": 0}), np.array([[0.6], [0.1]]), requester="bank", model_id=SBT)
    assert spec.unpack_bits(s.answer(_q([0, 2], [2, 2], [0, 1, 0, 1])), 4, "c").tolist() == [False, True] * 2
    with pytest.raises(ProtocolError, match="two splits of one tree"):
        s.answer(_q([0, 1], [1, 1], [1, 1]))
    assert len(s.answer(_q([0, 1], [1, 1], [0, 1]))) == 1  # two splits of one tree, for different rows


def test_tree_session_answers_missing_left_and_caps_rounds():
    s = _toy_session()
    assert spec.unpack_bits(s.answer(_q([0], [4], [0, 1, 2, 3])), 4, "chain").tolist() == [True, False, True, True]
    for t in range(1, spec.MAX_ROUNDS):
        s.answer(_q([t], [1], [0]))
    with pytest.raises(ProtocolError, match=f"more than {spec.MAX_ROUNDS} rounds"):
        s.answer(_q([spec.MAX_ROUNDS], [1], [0]))


def test_session_table_expires_and_stays_bounded():
    from fedcredit.protocols.scoring.host import SessionTable

    now = [0.0]
    table = SessionTable(ttl=10.0, max_sessions=3, max_rows=10, clock=lambda: now[0])
    for i in range(3):
        table.open(("bank", f"r{i}"), _toy_session(n=3))
    assert len(table) == 3 and table.rows == 9
    table.get(("bank", "r0"))  # used: r1 is now the least recently used
    table.open(("bank", "r3"), _toy_session(n=1))  # beyond 3 requests: r1 is dropped
    with pytest.raises(ProtocolError, match="unknown, finished or expired"):
        table.get(("bank", "r1"))
    table.open(("bank", "r4"), _toy_session(n=4))  # beyond 10 rows: the oldest go until it fits
    assert table.rows <= 10 and len(table) <= 3
    with pytest.raises(ProtocolError, match="already open"):
        table.open(("bank", "r4"), _toy_session(n=1))
    now[0] += 10.5  # a request that never finishes is dropped after its TTL
    assert len(table) == 0 and table.rows == 0
    with pytest.raises(ProtocolError, match="unknown, finished or expired"):
        table.get(("bank", "r4"))


# ------------------------------------------------------------------ authorization
def _last(fed, party, kind):
    return [r for r in fed.parties[party].audit.records() if r["kind"] == kind][-1]


@pytest.mark.parametrize("auth, match", [
    ({"consent_id": "c-1", "purpose": "marketing"}, "purpose 'marketing' is not allowed"),
    ({"consent_id": "", "purpose": "loan-application"}, "no consent record id"),
    ({"consent_id": "bad id with spaces", "purpose": "loan-application"}, "malformed consent"),
])
def test_host_refuses_bad_authorization_logs_and_keeps_serving(fed, auth, match):
    # through the bank's service (the bank's own policy allows 'marketing'; the hosts' does not) ...
    with pytest.raises(PolicyError, match=match):
        _score(fed, SBT, fed.info["ids"][:3], auth)
    assert _last(fed, "bank", "score.request")["fields"]["decision"].startswith("failed")
    # ... and straight to a host, which checks for itself
    client = tscoring.ScoringClient(fed.parties["bank"].transport.grpc_channel("chain"), "chain")
    with pytest.raises(PolicyError, match=match):
        client.contribute_async(SBT, spec.new_request_id(), spec.id_digests(["x"], SBT), auth, list(HOSTS))()
    rec = _last(fed, "chain", "score.contribute")
    assert rec["fields"]["decision"].startswith("refused") and rec["fields"]["requester"] == "bank"
    assert len(_score(fed, SBT, fed.info["ids"][:3])) == 3


def test_bank_refuses_purpose_outside_its_own_policy(fed):
    with pytest.raises(PolicyError, match="purpose 'fishing' is not allowed"):
        _score(fed, LR, fed.info["ids"][:2], {"consent_id": "c-9", "purpose": "fishing"})


def test_requester_that_is_not_the_models_guest_is_refused(fed):
    gov = fed.parties["gov"]
    client = tscoring.ScoringClient(gov.transport.grpc_channel("chain"), "chain")
    wait = client.contribute_async(SBT, spec.new_request_id(), spec.id_digests(["x"], SBT), AUTH, list(HOSTS))
    with pytest.raises(PolicyError, match="'gov' is not the guest"):
        wait()
    assert _last(fed, "chain", "score.contribute")["fields"]["requester"] == "gov"


def test_stranger_with_federation_certificate_is_refused(fed, tmp_path):
    from fedcredit.certs import TlsFiles, issue
    from fedcredit.transport.control import dial

    certs = fed.root / "certs"
    issue(certs, "mallory")
    ch = dial(f"127.0.0.1:{fed.parties['chain'].port}", target="chain",
              tls=TlsFiles(certs / "ca.crt", certs / "mallory.crt", certs / "mallory.key"))
    try:
        wait = tscoring.ScoringClient(ch, "chain").contribute_async(
            SBT, spec.new_request_id(), spec.id_digests(["x"], SBT), AUTH, list(HOSTS))
        with pytest.raises(PolicyError, match="'mallory' is not a peer"):
            wait()
    finally:
        ch.close()


def test_rate_limit_refuses_then_serving_continues(fed):
    svc = fed.parties["gov"].scoring
    old = svc.limiter
    svc.limiter = RateLimiter(2, 10**6)
    try:
        _score(fed, SBT, fed.info["ids"][:1])
        _score(fed, SBT, fed.info["ids"][:1])
        with pytest.raises(PolicyError, match="rate limit exceeded for 'bank'"):
            _score(fed, SBT, fed.info["ids"][:1])
        assert "rate limit" in _last(fed, "gov", "score.contribute")["fields"]["decision"]
    finally:
        svc.limiter = old
    assert len(_score(fed, SBT, fed.info["ids"][:1])) == 1


@pytest.mark.parametrize("requests_per_minute, ids_per_minute, batches, refused_at", [
    (3, 100, [1, 1, 1, 1], 3), (100, 10, [4, 4, 4], 2), (100, 10, [11], 0)])
def test_rate_limiter_buckets(requests_per_minute, ids_per_minute, batches, refused_at):
    now = [0.0]
    rl = RateLimiter(requests_per_minute, ids_per_minute, clock=lambda: now[0])
    for i, n in enumerate(batches):
        if i == refused_at:
            with pytest.raises(PolicyError, match="rate limit exceeded"):
                rl.take("bank", n)
            break
        rl.take("bank", n)
    now[0] += 60.0
    rl.take("bank", min(batches[0], ids_per_minute))  # refilled after a minute


def test_replayed_or_stale_request_id_is_refused(fed):
    bank = fed.parties["bank"]
    rid = spec.new_request_id()
    client = tscoring.ScoringClient(bank.transport.grpc_channel("chain"), "chain")
    d = spec.id_digests(fed.info["ids"][:2], SBT)
    client.contribute_async(SBT, rid, d, AUTH, list(HOSTS))()
    with pytest.raises(Exception, match="replay"):
        client.contribute_async(SBT, rid, d, AUTH, list(HOSTS))()
    with pytest.raises(Exception, match="outside the accepted window"):
        client.contribute_async(SBT, spec.new_request_id(now=1e9), d, AUTH, list(HOSTS))()


def test_guest_cannot_drop_a_host_to_unmask_lr(fed):
    client = tscoring.ScoringClient(fed.parties["bank"].transport.grpc_channel("chain"), "chain")
    with pytest.raises(PolicyError, match="does not match model"):
        client.contribute_async(LR, spec.new_request_id(), spec.id_digests(["x"], LR), AUTH, ["chain"])()


# ------------------------------------------------------------------ audit
def test_every_party_logs_each_request_with_salted_digests(fed):
    ids = fed.info["ids"][:4]
    _, rid = fed.parties["bank"].scoring.score("bank", LR, ids, AUTH)
    recs = {p: _last(fed, p, "score.request" if p == "bank" else "score.contribute") for p in PARTIES}
    for p, r in recs.items():
        f = r["fields"]
        assert f["request_id"] == rid and f["n_ids"] == 4 and f["model"] == LR
        assert f["consent_id"] == AUTH["consent_id"] and f["purpose"] == AUTH["purpose"]
        assert len(f["id_digests"]) == 4 and all(i not in json.dumps(f) for i in ids)
    assert recs["chain"]["fields"]["id_digests"] != recs["gov"]["fields"]["id_digests"]  # salted per party


_rewrite = rewrite_record  # tests/_audit_tamper.py


@pytest.mark.parametrize("attack", ["edit_line", "truncate", "rewrite"])
def test_audit_tampering_is_detected_including_through_peer_heads(fed, tmp_path, attack):
    bank = fed.parties["bank"]
    _score(fed, SBT, fed.info["ids"][:2])
    assert bank.scoring.exchange_heads_now() == {"chain": "ok", "gov": "ok"}
    assert fed.parties["chain"].scoring.heads.held_for("bank")[-1] == bank.audit.head()
    held = fetch_held_heads(bank.config)
    known = [h for hs in held.values() for h in hs]
    assert known and verify(bank.audit.path, known_heads=known)
    copy = tmp_path / "audit.log"
    shutil.copy(bank.audit.path, copy)
    lines = copy.read_text().splitlines(keepends=True)
    if attack == "edit_line":
        k = max(i for i, line in enumerate(lines) if '"kind":"score.request"' in line)
        assert '"n_ids":2' in lines[k]
        lines[k] = lines[k].replace('"n_ids":2', '"n_ids":3')
        copy.write_text("".join(lines))
        res = verify(copy)
        assert not res and "changed" in res.reason
    elif attack == "truncate":
        copy.write_text("".join(lines[:-3]))
        assert verify(copy)  # invisible from the log alone...
        res = verify(copy, known_heads=known)
        assert not res and "truncated" in res.reason  # ...but not to the peers
    else:
        _rewrite(copy, len(lines) - 2)
        assert verify(copy)
        res = verify(copy, known_heads=known)
        assert not res and "rewritten" in res.reason


def test_peer_reporting_malformed_head_is_refused(fed):
    with pytest.raises(ProtocolError, match="malformed audit head"):
        fed.parties["chain"].scoring.exchange_heads("bank", 3, "not-a-hash")


# ------------------------------------------------------------------ revocation
def test_revoke_refuses_next_request_message_and_job_without_restart(fed, capture):
    chain = fed.parties["chain"]
    assert len(_score(fed, SBT, fed.info["ids"][:1])) == 1
    with pytest.raises(PolicyError, match="only 'chain''s own operator"):
        chain.scoring.revoke("gov", "bank", "not allowed")
    chain.scoring.revoke("chain", "bank", "contract ended")
    try:
        del capture["view"].calls[:]
        with pytest.raises(PolicyError, match=r"'bank' is not a peer of 'chain': revoked .*reason: contract ended"):
            _score(fed, SBT, fed.info["ids"][:1])
        ch = fed.parties["bank"].transport.channel("after-revoke")
        with pytest.raises(PeerError, match="not a peer"):
            ch.send("chain", "hello", b"x")
        ch.close()
        with pytest.raises(PolicyError):
            fed.parties["bank"]._client("chain").propose("j-revoked", "{}", "")
        assert _last(fed, "chain", "peer.revoked")["fields"]["peer"] == "bank"
        # the refusing host holds nothing open, so the bank sends it no closing Decide (gov gets one)
        sent = [(h, type(req).__name__) for h, _, req in capture["view"].requests]
        assert ("chain", "ContributeRequest") in sent and ("chain", "DecideRequest") not in sent
        assert ("gov", "DecideRequest") in sent
        # chain keeps serving its other peers
        assert tscoring.GovernanceClient(fed.parties["gov"].transport.grpc_channel("chain"), "chain").held_heads() == []
    finally:
        (chain.state_dir / "revoked.json").unlink()
        chain.scoring.reload("chain")
    assert len(_score(fed, SBT, fed.info["ids"][:1])) == 1


def test_admit_re_admits_a_revoked_peer_at_once_and_is_audited(fed):
    gov = fed.parties["gov"]
    with pytest.raises(Exception, match="'bank' is not revoked"):
        gov.scoring.admit("gov", "bank", "never revoked")
    gov.scoring.revoke("gov", "bank", "audit finding")
    with pytest.raises(PolicyError, match="revoked"):
        _score(fed, LR, fed.info["ids"][:1])
    with pytest.raises(PolicyError, match="only 'gov''s own operator"):
        gov.scoring.admit("bank", "bank", "let me in")
    gov.scoring.reload("gov")  # a reload keeps a revoked peer revoked
    with pytest.raises(PolicyError, match="revoked"):
        _score(fed, LR, fed.info["ids"][:1])
    msg = gov.scoring.admit("gov", "bank", "finding resolved")
    assert "bank re-admitted on gov" in msg
    assert len(_score(fed, LR, fed.info["ids"][:1])) == 1  # at once, no restart
    rec = _last(fed, "gov", "peer.admitted")["fields"]
    assert rec["peer"] == "bank" and rec["reason"] == "finding resolved" and rec["by"] == "gov"
    assert "bank" not in json.loads((gov.state_dir / "revoked.json").read_text())


def test_removing_peer_from_config_and_reloading_refuses_it(fed):
    gov = fed.parties["gov"]
    path = gov.config.path
    original = path.read_text()
    text = "\n".join(line for line in original.splitlines() if not line.startswith("bank = "))
    path.write_text(text.replace('proposers = ["bank"]', "proposers = []").replace('requesters = ["bank"]', "requesters = []"))
    try:
        assert "removed bank" in gov.scoring.reload("gov")
        with pytest.raises(PolicyError, match="'bank' is not a peer of 'gov'"):
            _score(fed, LR, fed.info["ids"][:1])
    finally:
        path.write_text(original)
        gov.scoring.reload("gov")
    assert len(_score(fed, LR, fed.info["ids"][:1])) == 1


def test_expired_certificate_is_refused(fed, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    certs = fed.root / "certs"
    ca_cert = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bank")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=10))
            .not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("fedcredit://party/bank")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        certificate_chain=cert.public_bytes(serialization.Encoding.PEM))
    ch = grpc.secure_channel(f"127.0.0.1:{fed.parties['chain'].port}", creds,
                             options=[("grpc.ssl_target_name_override", tls_server_name("chain"))])
    try:
        wait = tscoring.ScoringClient(ch, "chain", timeout=3.0).contribute_async(
            SBT, spec.new_request_id(), spec.id_digests(["x"], SBT), AUTH, list(HOSTS))
        with pytest.raises((PeerError, PolicyError)):
            wait()
    finally:
        ch.close()
    assert len(_score(fed, SBT, fed.info["ids"][:1])) == 1


# ------------------------------------------------------------------ export
def test_export_needs_every_hosts_recorded_approval(fed):
    bank = fed.parties["bank"]
    # a fresh model id: copy the LR parts to a second step so earlier approvals do not count
    for p in PARTIES:
        src = fed.parties[p].state_dir / "jobs" / LR.split("/")[0] / "lr"
        shutil.copytree(src, src.with_name("lr2"), dirs_exist_ok=True)
    model = LR.split("/")[0] + "/lr2"
    with pytest.raises(PolicyError, match="has not approved exporting"):
        bank.scoring.export("bank", model)
    assert _last(fed, "chain", "export.refused")["fields"]["model"] == model
    fed.parties["chain"].scoring.approve_export("chain", model, "bank", "ok")
    with pytest.raises(PolicyError, match="'gov' has not approved"):
        bank.scoring.export("bank", model)
    fed.parties["gov"].scoring.approve_export("gov", model, "bank", "ok")
    merged = json.loads(bank.scoring.export("bank", model))
    for p in PARTIES:
        assert _last(fed, p, "export.approved")["fields"]["model"] == model
    for h in HOSTS:
        assert _last(fed, h, "export.released")["fields"]["requester"] == "bank"
    assert _last(fed, "bank", "export.done")["fields"]["model"] == model
    ids = fed.info["ids"][:50]
    np.testing.assert_allclose(predict_merged(merged, columns(fed.tables, ids)), _score(fed, model, ids), atol=1e-9)
    assert set(merged["coef"]) == {f for p in PARTIES for f in fed.tables[p].feature_names}


def test_spec_messages_have_one_sender_receiver_and_a_proto_type():
    from fedcredit._proto import scoring_pb2

    assert set(spec.SPEC.messages) == set(spec.Stage)
    for m in spec.SPEC.messages.values():
        assert m.fields[0] == "proto" and hasattr(scoring_pb2, m.fields[1]), m
        assert m.sender in {"operator", "guest", "host"} and m.receiver in {"operator", "guest", "host"}
        assert spec.SPEC.check(m.stage, getattr(scoring_pb2, m.fields[1])()) is not None
    with pytest.raises(ProtocolError, match="must be a ScoreRequest proto"):
        spec.SPEC.check(spec.Stage.SCORE, scoring_pb2.ScoreReply())


@pytest.mark.parametrize("model_id", ["a/b/c", "../x", "job/..", "", "job", "a b/c"])
def test_bad_model_ids_are_refused(model_id):
    with pytest.raises(ProtocolError, match="invalid model id"):
        spec.check_model_id(model_id)
