"""Vertical SecureBoost: lossless vs the plaintext reference, privacy of the wire, parties, resume, scoring.

Logic tests use a 1024-bit key from ``fedcredit.testing`` (the protocol is the
same at 2048 bits; the benchmark runs 2048). "Lossless" here is exact: the
reference quantizes (g, h) to the same 2**-32 grid the guest encrypts and sums
integers, so splits, bins and leaf weights are bit-for-bit equal.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import data_path

from fedcredit.artifacts import FileArtifacts
from fedcredit.crypto.blob import CipherBlob
from fedcredit.errors import ConfigError, DecryptionError, ProtocolError
from fedcredit.models.tree import GBDTReference
from fedcredit.protocols.secureboost import VerticalSecureBoost, predict_guest, predict_host, spec
from fedcredit.protocols.secureboost.model import GUEST_FILE, GuestModel
from fedcredit.testing import small_keypair, small_ou_keypair
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

GH_BITS = spec.GH_BITS


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _keypair(he):
    """A small key pair of scheme ``he`` (OU: 1024-bit ``p^2 q``, a 277-bit guarded plaintext space)."""
    return small_ou_keypair(1024) if he == "ou" else small_keypair(1024)


def _default_credit(n=2000):
    import pandas as pd

    g = pd.read_csv(data_path("default_credit", "hetero_guest.csv")).iloc[:n]
    h = pd.read_csv(data_path("default_credit", "hetero_host.csv")).set_index("id").loc[g["id"]].reset_index()
    return g.drop(columns=["id", "y"]).to_numpy(np.float64), h.drop(columns=["id"]).to_numpy(np.float64), g["y"].to_numpy()


def _credit3(n=2500):
    import pandas as pd

    bank = pd.read_csv(data_path("credit3", "bank.csv"))
    chain = pd.read_csv(data_path("credit3", "chain.csv"))
    gov = pd.read_csv(data_path("credit3", "gov.csv"))
    d = bank.merge(chain, on="id").merge(gov, on="id").sort_values("id").iloc[:n]
    return (d[bank.columns[2:]].to_numpy(np.float64), d[chain.columns[1:]].to_numpy(np.float64),
            d[gov.columns[1:]].to_numpy(np.float64), d["default_next_month"].to_numpy())


def _fit(parties: dict, y, kw, keypair, *, hub=None, workdirs=None, guest="bank"):
    """parties: {name: X} with the guest first."""
    fns = {}
    for name, X in parties.items():
        wd = None if workdirs is None else workdirs[name]
        store = FileArtifacts(wd) if wd is not None else None
        if name == guest:
            fns[name] = lambda ch, X=X, st=store: VerticalSecureBoost(**kw).fit(ch, X, y, keypair=keypair, artifacts=st)
        else:
            fns[name] = lambda ch, X=X, st=store: VerticalSecureBoost(**kw).fit(ch, X, guest=guest, artifacts=st)
    return run_local(fns, timeout=300, hub=hub)


def _reference(kw, X, y, seed=None) -> GBDTReference:
    """The plaintext reference of a federated run with parameters ``kw`` (and the guest's secret split seed)."""
    kw = {"min_node_rows": spec.MIN_NODE_ROWS, **{k: v for k, v in kw.items() if k != "he"}}  # the federated default
    return GBDTReference(**kw, gh_bits=GH_BITS, validation_seed=seed).fit(X, y)


def _sibling(nodes, nid):
    parent = next(p for p in nodes if not p.is_leaf and nid in (p.left, p.right))
    return parent.right if parent.left == nid else parent.left


def _assert_same_trees(fed: GuestModel, ref: GBDTReference, offsets: dict):
    assert len(fed.trees) == len(ref.trees_)
    for t, (a_nodes, b_nodes) in enumerate(zip(fed.trees, ref.trees_)):
        assert len(a_nodes) == len(b_nodes), f"tree {t}"
        for a, b in zip(a_nodes, b_nodes):
            assert a.is_leaf == b.is_leaf, (t, a.id)
            if not a.is_leaf:
                assert offsets[a.party] + a.feature == b.feature, (t, a.id)
                assert (a.bin, a.missing_left, a.left, a.right) == (b.bin, b.missing_left, b.left, b.right), (t, a.id)
            assert a.value == b.value, (t, a.id)  # exact: same integer sums on both sides


@pytest.mark.parametrize("he", ["ou", "paillier"])
@pytest.mark.parametrize("case", ["plain", "sampling+missing", "early_stopping", "min_node_rows"])
def test_two_party_lossless_vs_reference(he, case):
    keypair = _keypair(he)
    Xg, Xh, y = _default_credit(2000)
    kw = dict(n_trees=3, max_depth=3, he=he)
    if case == "sampling+missing":
        rng = np.random.default_rng(1)
        Xh = Xh.copy()
        Xh[rng.random(Xh.shape) < 0.15] = np.nan
        Xg = Xg.copy()
        Xg[rng.random(Xg.shape) < 0.05] = np.nan
        kw.update(subsample=0.8, colsample=0.6, random_state=7)
    if case == "early_stopping":
        kw.update(n_trees=6, early_stopping_rounds=1, learning_rate=1.0, max_depth=4, validation_fraction=0.3)
    if case == "min_node_rows":  # larger than the floor: the grower stops where the hosts would refuse
        kw.update(max_depth=5, min_node_rows=150)
    res = _fit({"bank": Xg, "host": Xh}, y, kw, keypair)
    assert res["bank"].result_["he"] == he
    fed = res["bank"].model_
    ref = _reference(kw, np.hstack([Xg, Xh]), y, fed.validation_seed)
    _assert_same_trees(fed, ref, {"bank": 0, "host": Xg.shape[1]})
    assert any(n.party == "host" for nodes in fed.trees for n in nodes), "the host should win some splits"
    if case == "sampling+missing":
        assert any(n.missing_left for nodes in fed.trees for n in nodes if not n.is_leaf)
    if case == "min_node_rows":
        for nodes in fed.trees:
            for n in nodes:
                if not n.is_leaf:
                    assert min(nodes[n.left].n_rows, nodes[n.right].n_rows) >= 1
                    assert n.n_rows >= 150 and (n.id == 0 or nodes[_sibling(nodes, n.id)].n_rows >= 150)
    if case == "early_stopping":
        assert res["bank"].result_["validation"]["auc"] > 0.6
        assert res["bank"].result_["trees"] == ref.n_trees_
    # federated scoring equals the reference's predictions
    hub = MemoryHub(["bank", "host"])
    out = run_local({
        "bank": lambda ch: predict_guest(ch.sub("score-1"), fed, Xg[:300]),
        "host": lambda ch: predict_host(ch.sub("score-1"), res["host"].model_, Xh[:300]),
    }, hub=hub, timeout=60)
    np.testing.assert_allclose(out["bank"], ref.predict_proba(np.hstack([Xg, Xh])[:300])[:, 1], rtol=0, atol=1e-12)


def test_gh_streamed_in_many_small_parts_same_trees(keypair):
    """A tree's (g, h) in parts of 7 rows: the same trees as the reference, and every GH message is bounded."""
    Xg, Xh, y = _default_credit(1000)
    kw = dict(n_trees=2, max_depth=3, subsample=0.9, random_state=3)
    hub = MemoryHub(["bank", "host"])
    res = _fit({"bank": Xg, "host": Xh}, y, dict(kw, gh_part_rows=7), keypair, hub=hub)
    ref = _reference(kw, np.hstack([Xg, Xh]), y)
    _assert_same_trees(res["bank"].model_, ref, {"bank": 0, "host": Xg.shape[1]})
    assert any(n.party == "host" for nodes in res["bank"].model_.trees for n in nodes)
    width = keypair[0].width
    for t in range(2):
        start = [serde.decode(p) for _, r, tg, p in hub.captured if r == "host" and tg == f"tree-{t}/start"][0]
        n = len(start["rows"])
        assert n == 900 and start["gh_parts"] == -(-n // 7) == 129
        parts = [(tg, p) for _, r, tg, p in hub.captured if r == "host" and tg.startswith(f"tree-{t}/part-")]
        assert [tg for tg, _ in parts] == [f"tree-{t}/part-{k}/gh" for k in range(129)]
        assert max(len(p) for _, p in parts) < 7 * width + 256  # 7 ciphertexts and a small header
        msgs = [serde.decode(p) for _, p in parts]
        assert [m["start"] for m in msgs] == list(range(0, n, 7))
        assert sum(m["gh"].count for m in msgs) == n and msgs[-1]["gh"].count == n - 128 * 7
        # flow control: part k leaves the guest only after the host acknowledged part k - GH_WINDOW
        at = {tg: i for i, (_, _, tg, _) in enumerate(hub.captured)}
        for k in range(spec.GH_WINDOW, 129):
            assert at[f"tree-{t}/part-{k - spec.GH_WINDOW}/gh-ack"] < at[f"tree-{t}/part-{k}/gh"], (t, k)
        assert f"tree-{t}/part-128/gh-ack" in at


def test_gh_part_rows_default_is_a_64_mib_budget(keypair):
    assert spec.gh_part_rows(512) == 131_072  # 2048-bit key: 512-byte ciphertexts
    assert spec.gh_part_rows(768) == 87_381  # 3072-bit key
    assert spec.gh_part_rows(512, 1000) == 1000
    assert spec.gh_parts(10, 4) == [(0, 4), (4, 8), (8, 10)] and spec.gh_parts(0, 4) == []
    # small trees: one part, as before the parts existed
    Xg, Xh, y = _default_credit(300)
    hub = MemoryHub(["bank", "host"])
    _fit({"bank": Xg, "host": Xh}, y, dict(n_trees=1, max_depth=2), keypair, hub=hub)
    assert [t for _, r, t, _ in hub.captured if r == "host" and "part-" in t] == ["tree-0/part-0/gh"]


class _Tamper:
    """The guest's channel with the GH parts (and START) of tree 0 rewritten by ``fn(tag, msg)`` -> [(tag, msg)]."""

    def __init__(self, ch, fn):
        self._ch, self._fn = ch, fn

    def __getattr__(self, name):
        return getattr(self._ch, name)

    def send(self, peer, tag, obj):
        for tg, msg in self._fn(tag, obj):
            self._ch.send(peer, tg, msg)


def _cut(blob: CipherBlob, count: int, data_len: int | None = None) -> CipherBlob:
    data = blob.data[: count * blob.width] if data_len is None else blob.data[:data_len]
    return CipherBlob(blob.scheme, blob.key_fingerprint, blob.width, count, data, dict(blob.meta))


@pytest.mark.parametrize("case,match", [
    ("parts", r"start: 14 gh parts announced for 100 rows of 7 per part, expected 15"),
    ("count", r"gh: part 1 holds 6 ciphertexts, expected 7 \(rows 7\.\.13\)"),
    ("length", r"cipher vector of 7 x \d+ bytes carries \d+ bytes"),  # refused when the host decodes it
    ("order", r"gh: part 1 arrived as part 0 of 15 \(out of order or repeated\)"),
    ("duplicate", r"gh: part 0 arrived as part 1 of 15 \(out of order or repeated\)"),
    ("start", r"gh: part 2 starts at row 13, expected row 14"),
    ("last", r"gh: part 14 holds 7 ciphertexts, expected 2 \(rows 98\.\.99\)"),
])
def test_host_refuses_malformed_gh_parts(keypair, case, match):
    Xg, Xh, y = _default_credit(100)
    held = {}

    def tamper(tag, msg):
        if tag == "tree-0/part-0/gh":
            held["p0"] = msg
            if case == "order":
                return []  # sent after part 1, under part 1's tag
        if case == "parts" and tag == "tree-0/start":
            return [(tag, dict(msg, gh_parts=msg["gh_parts"] - 1))]
        if case == "order" and tag == "tree-0/part-1/gh":
            return [("tree-0/part-0/gh", msg), (tag, held["p0"])]
        if case == "duplicate" and tag == "tree-0/part-1/gh":
            return [(tag, held["p0"])]
        if case == "count" and tag == "tree-0/part-1/gh":
            return [(tag, dict(msg, gh=_cut(msg["gh"], 6)))]
        if case == "length" and tag == "tree-0/part-1/gh":
            return [(tag, dict(msg, gh=_cut(msg["gh"], 7, 7 * msg["gh"].width - 3)))]
        if case == "start" and tag == "tree-0/part-2/gh":
            return [(tag, dict(msg, start=13))]
        if case == "last" and tag == "tree-0/part-14/gh":
            return [(tag, dict(msg, gh=held["p0"]["gh"]))]
        return [(tag, msg)]

    kw = dict(n_trees=1, max_depth=2, gh_part_rows=7)
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(_Tamper(ch, tamper), Xg, y, keypair=keypair),
           "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank")}
    with pytest.raises(ProtocolError, match=match):
        run_local(fns, timeout=60)


def test_guest_refuses_an_acknowledgement_of_another_part(keypair):
    Xg, Xh, y = _default_credit(100)

    def tamper(tag, msg):
        return [(tag, {"part": 0} if tag == "tree-0/part-1/gh-ack" else msg)]

    kw = dict(n_trees=1, max_depth=2, gh_part_rows=7)
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair),
           "host": lambda ch: VerticalSecureBoost(**kw).fit(_Tamper(ch, tamper), Xh, guest="bank")}
    with pytest.raises(ProtocolError, match=r"gh-ack from 'host': acknowledges part 0, expected 1"):
        run_local(fns, timeout=60)


def _fit_grpc(Xg, Xh, y, kw, keypair, **transport):
    """Guest and host over two in-process gRPC transports on loopback (plaintext: this is about sizes)."""
    import threading

    from fedcredit.transport.grpc import GrpcTransport

    ts = {n: GrpcTransport(party=n, listen="127.0.0.1:0", tls=None, peers={}, insecure=True, **transport)
          for n in ("bank", "host")}
    ports = {n: t.start() for n, t in ts.items()}
    ts["bank"].set_peers({"host": f"127.0.0.1:{ports['host']}"})
    ts["host"].set_peers({"bank": f"127.0.0.1:{ports['bank']}"})
    out, errors = {}, {}
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair),
           "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank")}

    def run(name):
        ch = ts[name].channel("sbt", default_timeout=60)
        try:
            out[name] = fns[name](ch)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors[name] = exc
            ch.abort(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in fns]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        for t in ts.values():
            t.stop(0)
    if errors:
        raise errors.get("bank", errors.get("host"))
    return out


def test_gh_parts_stay_under_the_transport_message_limit(keypair):
    """Scaled down from millions of rows: a tree's (g, h) of 1000 rows x 256 bytes against a 64 KiB message
    limit (and a receive buffer of 3 parts) is refused as one message and goes through in 200-row parts."""
    Xg, Xh, y = _default_credit(1000)
    kw = dict(n_trees=1, max_depth=2)
    limit = dict(max_message_bytes=64 * 2**10, max_buffer_bytes=192 * 2**10)
    assert 1000 * keypair[0].width > limit["max_message_bytes"] > 200 * keypair[0].width
    with pytest.raises(ProtocolError, match=r"tree-0/part-0/gh' of \d+ bytes exceeds max_message_bytes=65536"):
        _fit_grpc(Xg, Xh, y, kw, keypair, **limit)
    res = _fit_grpc(Xg, Xh, y, dict(kw, gh_part_rows=200), keypair, **limit)
    ref = _reference(kw, np.hstack([Xg, Xh]), y)
    _assert_same_trees(res["bank"].model_, ref, {"bank": 0, "host": Xg.shape[1]})
    assert res["host"].result_["gh_parts"] == 5


def test_check_gh_part_refuses_bytes_that_are_not_count_ciphertexts(keypair):
    """The same check without the wire (a blob built in-process, e.g. by another channel implementation)."""
    blob = keypair[1].encrypt_ints([1, 2, 3]).to_blob()
    msg = {"part": 0, "start": 0, "gh": _cut(blob, 3, 3 * blob.width - 1)}
    with pytest.raises(ProtocolError, match=r"part 0 holds \d+ bytes, not 3 ciphertexts"):
        spec.check_gh_part(msg, 0, [(0, 3)])
    assert spec.check_gh_part({"part": 0, "start": 0, "gh": blob}, 0, [(0, 3)]) is blob


def test_reference_float_vs_fixed_point_leaf_precision():
    """The fixed-point grid (2**-32) moves leaf weights by < 1e-7 from a float GBDT on this data."""
    Xg, Xh, y = _default_credit(2000)
    X = np.hstack([Xg, Xh])
    a = GBDTReference(n_trees=3).fit(X, y)
    b = GBDTReference(n_trees=3, gh_bits=GH_BITS).fit(X, y)
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X), atol=1e-7)


def _walk(obj):
    yield obj
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def test_privacy_of_captured_payloads(keypair):
    Xg, Xh, y = _default_credit(1500)
    kw = dict(n_trees=2, max_depth=3, early_stopping_rounds=2)
    hub = MemoryHub(["bank", "host"])
    res = _fit({"bank": Xg, "host": Xh}, y, kw, keypair, hub=hub)
    int_keys = {"train_rows", "valid_rows", "rows", "nodes", "offsets", "bins", "features", "split_ids",
                "left_bins", "left_offsets"}  # categorical splits: the left bin indexes (empty for numeric ones)
    to_host = [(t, serde.decode(p), p) for s, r, t, p in hub.captured if r == "host"]
    assert to_host
    label_bytes = [y.astype(dt).tobytes() for dt in (np.int8, np.int64, np.float64, np.bool_)]
    for tag, msg, raw in to_host:
        assert isinstance(msg, dict)
        for k, v in msg.items():
            if isinstance(v, np.ndarray):
                # only row positions, node ids, feature/bin indexes and flags — never a float
                assert v.dtype.kind in "ib", (tag, k, v.dtype)
                assert k in int_keys | {"missing_left"}, (tag, k)
            elif k == "public_key":  # the one public-key wire shape: a scheme name and the key's bytes
                assert {"scheme", "n"} <= set(v) <= {"scheme", "n", "g", "h"}, tag
                assert all(isinstance(x, (str, bytes)) for x in v.values()), tag
            else:
                assert isinstance(v, (CipherBlob, str, bytes, int, bool, type(None))), (tag, k, type(v))
                assert not isinstance(v, float), (tag, k)
        assert not any(lb in raw for lb in label_bytes), tag
    # the ciphertexts the host gets are under the guest's key
    blobs = [v for _, m, _ in to_host for v in _walk(m) if isinstance(v, CipherBlob)]
    assert blobs and all(b.key_fingerprint == keypair[0].fingerprint for b in blobs)
    # the guest never receives a host threshold (nor the host's raw feature values)
    host_model = res["host"].model_
    thresholds = [s.threshold for s in host_model.splits.values() if np.isfinite(s.threshold)]
    assert thresholds
    to_guest = [(t, serde.decode(p), p) for s, r, t, p in hub.captured if r == "bank"]
    for tag, msg, raw in to_guest:
        for v in _walk(msg):
            if isinstance(v, float):
                assert v not in thresholds, tag
            if isinstance(v, np.ndarray):
                assert v.dtype.kind != "f", tag
        for thr in thresholds:
            assert np.float64(thr).tobytes() not in raw, tag
    assert all(n.threshold is None for nodes in res["bank"].model_.trees for n in nodes if n.party == "host")


@pytest.mark.parametrize("he", ["ou", "paillier"])
def test_three_parties_credit3(he):
    Xb, Xc, Xv, y = _credit3(2500)
    kw = dict(n_trees=2, max_depth=3)
    res = _fit({"bank": Xb, "chain": Xc, "gov": Xv}, y, dict(kw, he=he), _keypair(he))
    assert res["bank"].result_["he"] == he
    ref = _reference(kw, np.hstack([Xb, Xc, Xv]), y)
    _assert_same_trees(res["bank"].model_, ref, {"bank": 0, "chain": Xb.shape[1], "gov": Xb.shape[1] + Xc.shape[1]})
    assert res["bank"].result_["train"]["auc"] > 0.7


def test_host_with_constant_features_completes(keypair):
    Xg, _, y = _default_credit(1200)
    Xh = np.ones((len(Xg), 3))
    kw = dict(n_trees=2, max_depth=2)
    res = _fit({"bank": Xg, "host": Xh}, y, kw, keypair)
    ref = _reference(kw, Xg, y)
    _assert_same_trees(res["bank"].model_, ref, {"bank": 0})
    assert res["host"].model_.splits == {}


def test_guest_only_first_tree(keypair):
    Xg, Xh, y = _default_credit(1200)
    hub = MemoryHub(["bank", "host"])
    res = _fit({"bank": Xg, "host": Xh}, y, dict(n_trees=2, guest_only_first_tree=True), keypair, hub=hub)
    trees = res["bank"].model_.trees
    assert all(n.party in (None, "bank") for n in trees[0])
    # the host got no ciphertexts and no node membership for tree 0
    tree0 = [t for s, r, t, p in hub.captured if r == "host" and "/tree-0/" in f"/{t}" and ("level" in t or "part" in t)]
    assert tree0 == []
    start0 = [serde.decode(p) for s, r, t, p in hub.captured if r == "host" and t.endswith("tree-0/start")]
    assert start0[0]["mode"] == "guest_only" and start0[0]["gh_parts"] == 0
    assert any(t.endswith("tree-1/part-0/gh") for s, r, t, p in hub.captured if r == "host")


def test_resume_from_checkpoint(keypair, tmp_path):
    Xg, Xh, y = _default_credit(1200)
    kw = dict(n_trees=3, max_depth=2)
    wd = {"bank": tmp_path / "bank", "host": tmp_path / "host"}
    full = _fit({"bank": Xg, "host": Xh}, y, kw, keypair, workdirs=wd)
    # simulate a guest killed after its first tree (the host had finished more)
    path = wd["bank"] / GUEST_FILE
    m = GuestModel.load(path)
    m.trees = m.trees[:1]
    m.save(path)
    # the part size of the streamed (g, h) does not change the trees, so it may change on resume
    again = _fit({"bank": Xg, "host": Xh}, y, dict(kw, gh_part_rows=50), keypair, workdirs=wd)
    assert again["bank"].result_["resumed_from"] == 1 and again["bank"].result_["trees_built"] == 2
    ref = _reference(kw, np.hstack([Xg, Xh]), y)
    _assert_same_trees(again["bank"].model_, ref, {"bank": 0, "host": Xg.shape[1]})
    _assert_same_trees(full["bank"].model_, ref, {"bank": 0, "host": Xg.shape[1]})


def test_job_step_run(keypair, tmp_path, monkeypatch):
    from fedcredit.data import Table
    from fedcredit.protocols.context import StepContext
    from fedcredit.protocols.registry import get_step
    import fedcredit.crypto.paillier as paillier

    Xg, Xh, y = _default_credit(800)
    ids = [str(i) for i in range(len(y))]
    tables = {"bank": Table.from_arrays("bank", ids, Xg, [f"x{j}" for j in range(Xg.shape[1])], y=y),
              "host": Table.from_arrays("host", ids, Xh, [f"x{j}" for j in range(Xh.shape[1])])}
    monkeypatch.setattr(paillier, "generate_keypair", lambda bits=2048: keypair)
    step = get_step("secureboost")
    progress = []
    roles = {"bank": "guest", "host": "host"}

    def party(name):
        def fn(ch):
            ctx = StepContext(job_id="j1", step="sbt", kind="secureboost", party=name, roles=roles,
                              params={"n_trees": 2, "max_depth": 2, "he": "paillier"}, channel=ch.sub("j1", "sbt"),
                              data=tables[name], artifacts=FileArtifacts(tmp_path / name),
                              progress=lambda msg, frac=None: progress.append((name, msg, frac)))
            return step(ctx)
        return fn

    out = run_local({"bank": party("bank"), "host": party("host")}, timeout=120)
    assert out["bank"]["trees"] == 2 and out["bank"]["train"]["auc"] > 0.7
    assert set(out["bank"]["timings"]) >= {"encrypt", "decrypt", "host_histogram", "split", "transfer"}
    assert (tmp_path / "bank" / GUEST_FILE).exists() and (tmp_path / "host" / "sbt_host.json").exists()
    assert [f for p, _, f in progress if p == "bank"] == [0.5, 1.0]
    # the guest leaves its labels and scores for its own report's ROC/KS plots; the host has none
    from fedcredit.models.metrics import auc
    from fedcredit.report import SCORES_FILE

    sc = np.load(tmp_path / "bank" / SCORES_FILE)
    assert len(sc["y"]) == len(y) and not sc["validation"].any()  # no early stopping: no validation split
    assert auc(sc["y"][~sc["validation"]], sc["score"][~sc["validation"]]) == pytest.approx(out["bank"]["train"]["auc"])
    assert not (tmp_path / "host" / SCORES_FILE).exists()


@pytest.mark.parametrize("param,value", [("key_bits", 1024), ("max_depth", 0), ("guest_only_first_tree", 1),
                                         ("he", "rsa"), ("he", "OU")])
def test_estimator_param_validation(param, value):
    hub = MemoryHub(["bank", "host"])
    with pytest.raises(ConfigError, match=f"'{param}' parameter of VerticalSecureBoost"):
        VerticalSecureBoost(**{param: value}).fit(hub.channel("bank"), np.zeros((4, 1)), np.array([0, 1, 0, 1]))


def test_spec_every_message_has_one_sender_and_receiver():
    msgs = spec.SPEC.messages
    for stage, msg in msgs.items():
        assert {msg.sender, msg.receiver} == {"guest", "host"}, stage
        assert msg.fields, stage
    assert set(msgs) == set(spec.Stage)
    # one tag per (message, tree, level/part) of a run: no two messages of any trees, levels or parts collide
    tags = set()
    for s in spec.Stage:
        need = {"job": {}, "tree": {"t"}, "part": {"t", "k"}, "level": {"t", "d"}}.get(msgs[s].scope, {"t"})
        for t, i in itertools.product(range(3), range(12)):
            idx = {k: v for k, v in {"t": t, "k": i, "d": i}.items() if k in need}
            tags.add((s, spec.SPEC.tag(s, **idx)))
    assert len({tg for _, tg in tags}) == len(tags)
    assert spec.SPEC.tag(spec.Stage.GH, t=3, k=11) == "tree-3/part-11/gh"
    assert spec.SPEC.tag(spec.Stage.TREE_PREDICT_REQ, t=2) == "tree-2/predict-req"
    with pytest.raises(ProtocolError, match="tag index must be"):
        spec.SPEC.tag(spec.Stage.GH, t=3)


@pytest.mark.parametrize("stage,payload,match", [
    (spec.Stage.HIST_REQ, [], "expected dict"),
    (spec.Stage.HIST_REQ, {"done": 1, "nodes": np.zeros(0, np.int64), "offsets": np.zeros(1, np.int64),
                           "rows": np.zeros(0, np.int64)}, "'done' must be bool"),
    (spec.Stage.SPLIT, {"split_ids": np.zeros(0, np.int32), "left": np.zeros(0, bool)}, "'split_ids' must be"),
    (spec.Stage.SETUP_REPLY, {"resume_trees": 0}, "missing keys"),
    (spec.Stage.PREDICT, {"left": np.zeros(1, np.uint8), "extra": 1}, "unexpected keys"),
])
def test_spec_expect_rejects(stage, payload, match):
    with pytest.raises(ProtocolError, match=match):
        spec.SPEC.check(stage, payload)


def test_a_message_out_of_the_training_order_is_refused():
    """The flow check: a host receives no HIST_REQ before START, and a guest sends no second SETUP."""
    hub = MemoryHub(["bank", "host"])
    host = spec.session({"bank": "guest", "host": "host"}, "host", "training")
    with pytest.raises(ProtocolError, match="out of order"):
        host.recv(hub.channel("host"), "bank", spec.Stage.HIST_REQ, t=0, d=0)
    guest = spec.session({"bank": "guest", "host": "host"}, "bank", "training")
    guest.send(hub.channel("bank"), "host", spec.Stage.SETUP, {})
    with pytest.raises(ProtocolError, match="out of order"):
        guest.send(hub.channel("bank"), "host", spec.Stage.SETUP, {})
    assert [t for _, _, t, _ in hub.captured] == ["setup"]


def test_host_rejects_split_request_for_unknown_bin(keypair):
    Xg, Xh, y = _default_credit(300)
    from fedcredit.protocols.secureboost import guest as guest_mod

    real = guest_mod.RemoteSource.request_splits

    def evil(self, depth, splits):
        for node, _ in splits:
            node.bin = 10_000
        real(self, depth, splits)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(guest_mod.RemoteSource, "request_splits", evil)
        with pytest.raises(ProtocolError, match="no feature .* bin"):
            _fit({"bank": Xg, "host": Xh * 100}, y, dict(n_trees=1, max_depth=2), keypair)


# ---------------------------------------------------------------- the additive scheme (he = "ou" | "paillier")
@pytest.mark.parametrize("he", ["ou", "paillier"])
def test_public_key_wire_names_its_scheme(he):
    from fedcredit.protocols._spec import decode_public_key, encode_public_key

    pk, _ = _keypair(he)
    wire = encode_public_key(pk)
    assert wire["scheme"] == he and decode_public_key(wire) == pk
    with pytest.raises(ProtocolError, match="not in the public-key wire shape"):
        decode_public_key(dict(wire, scheme="rsa"))


@pytest.mark.parametrize("he,case,match", [
    ("ou", "unknown", r"'public_key' must be a public key"),
    ("ou", "mislabelled", r"'public_key' must be a public key"),  # OU's n, g, h named "paillier": not its shape
    ("paillier", "mislabelled", r"'public_key' must be a public key"),
    ("paillier", "bad_key", r"not a valid paillier public key"),
])
def test_host_refuses_an_unknown_or_mislabelled_scheme(he, case, match):
    Xg, Xh, y = _default_credit(100)

    def tamper(tag, msg):
        if tag == "setup":
            key = dict(msg["public_key"])
            if case == "bad_key":
                key["n"] = (4).to_bytes(1, "big")  # even, tiny: no Paillier modulus
            else:
                key["scheme"] = "rsa" if case == "unknown" else ("paillier" if he == "ou" else "ou")
            return [(tag, dict(msg, public_key=key))]
        return [(tag, msg)]

    kw = dict(n_trees=1, max_depth=2, he=he)
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(_Tamper(ch, tamper), Xg, y, keypair=_keypair(he)),
           "host": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank")}
    with pytest.raises((ProtocolError, DecryptionError), match=match):
        run_local(fns, timeout=60)


@pytest.mark.parametrize("he", ["ou", "paillier"])
def test_codec_packs_into_the_keys_plaintext_space(he):
    from fedcredit.protocols.secureboost import he as he_mod
    from fedcredit.protocols.secureboost.guest import GHCodec

    pk, _ = _keypair(he)
    bits = he_mod.plaintext_bits(pk)
    assert bits == (pk.plaintext_bits if he == "ou" else pk.bits - 1)
    codec = GHCodec(2000, bits)
    assert codec.per_ciphertext == bits // spec.item_bits(2000) == (3 if he == "ou" else 11)
    Xg, Xh, y = _default_credit(300)
    res = _fit({"bank": Xg, "host": Xh}, y, dict(n_trees=1, max_depth=2, he=he), (pk, _keypair(he)[1]))
    assert res["bank"].result_["sums_per_ciphertext"] == bits // spec.item_bits(len(y))


def test_codec_at_2048_bit_ou_holds_six_sums_of_80k_rows():
    from fedcredit.crypto import ou
    from fedcredit.protocols.secureboost.guest import GHCodec

    assert (2048 + 2) // 3 - 1 - ou.GUARD_BITS == 618  # the guarded space follows from |n| alone
    assert GHCodec(80_000, 618).per_ciphertext == 6 and GHCodec(80_000, 2047).per_ciphertext == 20


@pytest.mark.parametrize("crafted", ["above_p", "at_guard"])
def test_ou_guest_refuses_a_crafted_histogram_plaintext(crafted):
    """The OU key-recovery attack: a host returns, as its histogram, a ciphertext of ``M >= p`` it made.

    Against an unguarded decryption the guest would compute ``M mod p`` (and, through its splits or a
    returned value, the host could learn it: ``M - (M mod p)`` is a multiple of ``p`` and factors ``n``).
    The guarded decryption refuses the whole message with an opaque DecryptionError: no residue is
    computed into anything, and the run stops.
    """
    import gmpy2

    pk, sk = _keypair("ou")
    M = (1 << pk.p_bits) - 1 if crafted == "above_p" else 1 << pk.plaintext_bits
    # what the attack would learn from an unguarded decryption
    c = pow(pk.g, M, pk.n) * pow(pk.h, 12345, pk.n) % pk.n
    residue = sk._decrypt_unchecked(pk.vector_from_raw([c]))[0]
    if crafted == "above_p":
        assert gmpy2.gcd(M - residue, pk.n) not in (1, pk.n)  # a factor of n: the key is lost
    Xg, Xh, y = _default_credit(300)
    seen = []

    def tamper(tag, msg):
        if tag == "tree-0/level-0/hist":
            n_ct = msg["hist"].count
            forged = pk.vector_from_raw([c] + [1] * (n_ct - 1))
            seen.append(n_ct)
            return [(tag, dict(msg, hist=forged.to_blob()))]
        return [(tag, msg)]

    kw = dict(n_trees=1, max_depth=2, he="ou")
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=(pk, sk)),
           "host": lambda ch: VerticalSecureBoost(**kw).fit(_Tamper(ch, tamper), Xh, guest="bank")}
    with pytest.raises(DecryptionError) as info:
        run_local(fns, timeout=60)
    assert seen and str(M) not in str(info.value) and str(residue) not in str(info.value)
