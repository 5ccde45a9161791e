"""PSI: correctness against plain set intersection, agreed order, policy, privacy of every payload."""

from __future__ import annotations

import csv
import hashlib
import pickle

import numpy as np
import pytest
from conftest import data_path

from fedcredit.crypto.psi import (
    POINT_BYTES,
    get_group,
    match_points,
    normalize_id,
    normalize_ids,
    secure_permutation,
)
from fedcredit.data import Table
from fedcredit.errors import ConfigError, DataError, PolicyError, ProtocolError
from fedcredit.protocols.context import StepContext
from fedcredit.protocols.psi import run, run_guest, run_host, spec
from fedcredit.transport.memory import MemoryHub, run_local

GROUPS = ["curve25519", "ristretto255"]


def _psi(sets: dict[str, list[str]], *, guest: str = "bank", hub: MemoryHub | None = None, timeout: float = 60,
         mins: dict[str, int] | None = None, **kw):
    """Run PSI with ``guest`` and every other key of ``sets`` as a host; return ({party: result}, hub)."""
    hub = hub or MemoryHub(list(sets))
    hosts = [p for p in sets if p != guest]
    mins = mins or {}
    chunk = kw.pop("chunk_size", 1024)
    roles = {}
    for p, ids in sets.items():
        if p == guest:
            roles[p] = lambda ch, ids=ids, p=p: run_guest(ch, ids, hosts=hosts, chunk_size=chunk,
                                                          min_intersection=mins.get(p), **kw)
        else:
            roles[p] = lambda ch, ids=ids, p=p: run_host(ch, ids, guest=guest, hosts=hosts,
                                                         min_intersection=mins.get(p), **kw)
    return run_local(roles, hub=hub, timeout=timeout), hub


def _sets(rng, sizes: dict[str, int], common: int, length: int = 18) -> dict[str, list[str]]:
    """Random id sets of the given sizes sharing exactly ``common`` ids."""
    total = common + sum(n - common for n in sizes.values())
    pool = {"".join(rng.choice(list("0123456789ABCDEFGHJK"), size=length)) for _ in range(total + 50)}
    pool = sorted(pool)
    rng.shuffle(pool)
    shared, rest = pool[:common], pool[common:]
    out = {}
    for p, n in sizes.items():
        own, rest = rest[: n - common], rest[n - common:]
        ids = shared + own
        rng.shuffle(ids)
        out[p] = ids
    return out


def _aligned(res, sets) -> list[str]:
    """The id sequence at each party's index; asserts they are all the same."""
    seqs = {p: [normalize_id(sets[p][i]) for i in res[p].index] for p in res}
    first = next(iter(seqs.values()))
    for p, s in seqs.items():
        assert s == first, f"agreed order differs on {p}"
    return first


# ---------------------------------------------------------------- credit3 ----
@pytest.fixture(scope="module")
def credit3():
    sets = {}
    for p in ("bank", "chain", "gov"):
        with open(data_path("credit3", f"{p}.csv"), newline="") as f:
            sets[p] = [row["id"] for row in csv.DictReader(f)]
    res, hub = _psi(sets, chunk_size=8192, timeout=120)
    return sets, res, hub


def test_credit3_three_way_matches_plain_intersection(credit3):
    sets, res, _ = credit3
    plain = set(sets["bank"]) & set(sets["chain"]) & set(sets["gov"])
    assert len(plain) == 24641
    assert {p: r.size for p, r in res.items()} == {"bank": 24641, "chain": 24641, "gov": 24641}
    seq = _aligned(res, sets)
    assert set(seq) == {normalize_id(x) for x in plain}
    assert seq == sorted(seq)  # the agreed order: ascending normalized id
    assert res["bank"].sizes == {h: len(set(sets["bank"]) & set(sets[h])) for h in ("chain", "gov")}


def test_credit3_no_raw_id_or_id_hash_on_the_wire(credit3):
    sets, _, hub = credit3
    needles = set()
    for ids in sets.values():
        for x in ids:
            for v in {x, normalize_id(x)}:
                needles.add(v.encode())
                needles.add(hashlib.sha256(v.encode()).digest())
                needles.add(hashlib.sha256(v.encode()).hexdigest().encode())
    assert len(hub.captured) > 10
    blob = b"\x00".join(p for _, _, _, p in hub.captured)
    hit = _find_any(blob, needles)
    assert not hit, f"found {len(hit)} raw ids / id hashes on the wire, e.g. {hit[0]!r}"


def _find_any(blob: bytes, needles: set[bytes]) -> list[bytes]:
    """Needles (each >= 8 bytes) that occur anywhere in ``blob``: 8-byte prefix scan at every offset, then exact check."""
    prefixes = np.unique(np.frombuffer(b"".join(n[:8] for n in needles), dtype="<u8"))
    found = []
    for k in range(8):
        words = np.frombuffer(blob[k : k + (len(blob) - k) // 8 * 8], dtype="<u8")
        for w in np.nonzero(np.isin(words, prefixes))[0]:
            at = k + 8 * int(w)
            found += [n for n in needles if blob.startswith(n, at)]
    return found


def test_find_any_finds_a_planted_id():
    blob = bytes(range(256)) * 3 + b"9144010000014907XY" + bytes(100)
    assert _find_any(blob, {b"9144010000014907XY", hashlib.sha256(b"x").digest()}) == [b"9144010000014907XY"]


def test_credit3_host_receives_no_listable_guest_ids(credit3):
    """Everything a host gets is either sizes, the guest's blinded points, or positions of its own members."""
    sets, res, hub = credit3
    for host in ("chain", "gov"):
        received = hub.received_by(host)
        tags = {t.rsplit("/", 1)[0] if "chunk-" in t else t for _, t, _ in received}
        assert tags == {"guest-hello", "g2h", "size", "members"}
        from fedcredit.transport import serde

        members = [serde.decode(p) for _, t, p in received if t == "members"][0]
        assert len(members["positions"]) == res[host].size  # nothing about guest non-members
        points = b"".join(serde.decode(p) for _, t, p in received if t.startswith("g2h/"))
        assert len(points) == POINT_BYTES * len(sets["bank"])


# ---------------------------------------------------------- random sets ----
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(
    "sizes, common",
    [
        ({"bank": 300, "gov": 250}, 0),  # empty intersection
        ({"bank": 300, "gov": 300}, 300),  # full overlap
        ({"bank": 400, "gov": 150}, 90),  # partial
        ({"bank": 200, "gov": 300, "chain": 500}, 120),  # three parties
        ({"bank": 0, "gov": 100}, 0),  # empty guest set
    ],
)
def test_random_sets_match_plain_intersection(rng, group, sizes, common):
    sets = _sets(rng, sizes, common)
    res, _ = _psi(sets, group=group, chunk_size=128)
    for r in res.values():
        assert r.size == common
        assert r.index is not None and r.index.dtype == np.int64 and len(r.index) == common
    seq = _aligned(res, sets)
    assert set(seq) == {normalize_id(x) for x in set.intersection(*map(set, sets.values()))}


def test_surrounding_spaces_and_case_match():
    sets = {"bank": ["  ab12 ", "CD34", "Straße", "x9"], "gov": ["AB12", "cd34\t", "STRASSE", "y9"]}
    res, _ = _psi(sets)
    assert res["bank"].size == 3
    assert [sets["bank"][i] for i in res["bank"].index] == ["  ab12 ", "CD34", "Straße"]
    assert [sets["gov"][i] for i in res["gov"].index] == ["AB12", "cd34\t", "STRASSE"]


@pytest.mark.parametrize("who", ["bank", "gov"])
def test_duplicates_after_normalization_are_rejected(who):
    sets = {"bank": ["a1", "b2", "c3"], "gov": ["a1", "b2", "c3"]}
    sets[who] = ["a1", " B2", "b2 ", "c3"]
    with pytest.raises(DataError, match=r"<.*ids>: duplicate id after normalization .*'b2' at rows 1 and 2"):
        _psi(sets)
    with pytest.raises(DataError, match="empty id at row 1"):
        normalize_ids(["a", "  "], source="<x>")


# ------------------------------------------------------------ cardinality ----
@pytest.mark.parametrize(
    "sizes, common", [({"bank": 300, "gov": 200}, 70), ({"bank": 300, "gov": 200, "chain": 250}, 40), ({"bank": 50, "gov": 60}, 0)]
)
def test_cardinality_returns_size_and_no_membership(rng, sizes, common):
    sets = _sets(rng, sizes, common)
    # a host-only overlap must not count in the N-way size
    if "chain" in sets:
        extra = [x for x in sets["gov"] if x not in sets["bank"]][:10]
        sets["chain"] = [x for x in sets["chain"] if x in sets["bank"]] + extra
    res, hub = _psi(sets, mode="cardinality", chunk_size=64)
    for p, r in res.items():
        assert r.size == common and r.index is None and r.mode == "cardinality"
    for host in (p for p in sets if p != "bank"):
        assert res["bank"].sizes[host] == len(set(sets["bank"]) & set(sets[host]))
    from fedcredit.transport import serde

    for s, r, t, p in hub.captured:
        if t == "members":
            assert len(serde.decode(p)["positions"]) == 0
    # the doubly blinded guest points come back shuffled: they do not line up with the guest's order
    for host in (p for p in sets if p != "bank") if common else ():
        sent = b"".join(serde.decode(p) for s, r, t, p in hub.captured if s == host and t.startswith("back/"))
        assert len(sent) == POINT_BYTES * len(sets["bank"])


# ----------------------------------------------------------------- policy ----
@pytest.mark.parametrize(
    "mins, match",
    [
        ({"gov": 50}, r"'gov's policy requires at least 50 common rows; the intersection size is 30"),
        ({"bank": 31}, r"'bank's policy requires at least 31 common rows; the intersection size is 30"),
        ({"gov": 1000}, r"gov's policy requires at least 1000 common rows; its own set size is 100"),
        ({"bank": 150}, r"bank's policy requires at least 150 common rows; the set size of 'gov' is 100"),
    ],
)
def test_policy_min_intersection_refuses_with_reason(rng, mins, match):
    sets = _sets(rng, {"bank": 200, "gov": 100}, 30)
    with pytest.raises(PolicyError, match=match.replace("'gov's", "gov's").replace("'bank's", "bank's")):
        _psi(sets, mins=mins)


def test_policy_met_passes(rng):
    sets = _sets(rng, {"bank": 200, "gov": 100}, 30)
    res, _ = _psi(sets, mins={"bank": 30, "gov": 30})
    assert res["gov"].size == 30


# -------------------------------------------------------- malformed peers ----
def _fake_host(payload):
    def host(ch):
        spec.SPEC.check(spec.Stage.GUEST_HELLO, ch.recv("bank", "guest-hello"), peer="bank")
        ch.send("bank", "host-hello", {"n": 1, "accept": True, "reason": ""})
        ch.send("bank", "h2g/chunk-0", payload)
        ch.recv("bank", "g2h/chunk-0")
        ch.recv("bank", "size", timeout=5)

    return host


P = (1 << 255) - 19


def _twist_point() -> bytes:
    import gmpy2

    u = 2
    while gmpy2.legendre((u * u + 486662 * u + 1) * u, P) != -1:
        u += 1
    return u.to_bytes(32, "little")


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\x01" * 31, "not whole 32-byte points"),
        ([1, 2], "must be bytes, got list"),
        (b"\x05" * 64, "holds 2 points, expected 1"),
        (_twist_point(), "not a point of Curve25519"),
        ((P + 3).to_bytes(32, "little"), "not a point of Curve25519"),
        (b"\x00" * 32, "not a point of Curve25519|small order"),
    ],
)
def test_guest_rejects_malformed_host_points(payload, match):
    with pytest.raises(ProtocolError, match=match):
        run_local({"bank": lambda ch: run_guest(ch, ["a"], hosts=["gov"]), "gov": _fake_host(payload)}, timeout=10)


def test_group_or_mode_mismatch_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="asks for group 'ristretto255' / mode 'intersection'"):
        run_local({"bank": lambda ch: run_guest(ch, ["a"], hosts=["gov"], group="ristretto255"),
                   "gov": lambda ch: run_host(ch, ["a"], guest="bank")}, timeout=10)


@pytest.mark.parametrize(
    "msg, match",
    [
        ({"n": True, "accept": True, "reason": ""}, "'n' must be int, got bool"),
        ({"n": 1, "accept": True}, r"missing keys \['reason'\]"),
        ({"n": 1, "accept": True, "reason": "", "x": 1}, r"unexpected keys \['x'\]"),
        ("hello", "payload is str, expected dict"),
    ],
)
def test_spec_checks_keys_and_exact_types(msg, match):
    with pytest.raises(ProtocolError, match=match):
        spec.SPEC.check(spec.Stage.HOST_HELLO, msg, peer="gov")


def test_spec_checks_order():
    """A host that answers the size before any hello (or a guest that skips the hellos) is out of order."""
    hub = MemoryHub(["bank", "gov"])
    host = spec.session("gov", "bank", ["gov"])
    with pytest.raises(ProtocolError, match="size with 'bank' out of order"):
        host.recv(hub.channel("gov"), "bank", spec.Stage.SIZE)
    guest = spec.session("bank", "bank", ["gov"])
    with pytest.raises(ProtocolError, match="g2h with 'gov' out of order"):
        guest.send(hub.channel("bank"), "gov", spec.Stage.G2H, b"", i=0)
    assert hub.captured == []


def test_spec_tags_are_the_documented_ones():
    assert spec.SPEC.tag(spec.Stage.G2H, i=3) == "g2h/chunk-3"
    assert spec.SPEC.tag(spec.Stage.GUEST_HELLO) == "guest-hello"


# ----------------------------------------------------------- primitives ----
@pytest.mark.parametrize("group", GROUPS)
def test_blinding_commutes_and_keys_differ(group):
    g = get_group(group)
    a, b = g.new_key(), g.new_key()
    ids = normalize_ids([f"id-{i}" for i in range(50)])
    salt = b"s" * 16
    ab = g.exp(b, g.blind(a, ids, salt))
    ba = g.exp(a, g.blind(b, ids, salt))
    assert ab == ba
    assert g.blind(a, ids, salt) != g.blind(b, ids, salt)
    assert g.blind(a, ids, salt) != g.blind(a, ids, b"t" * 16)  # the salt separates runs
    assert len(set(g.blind(a, ids, salt)[i : i + 32] for i in range(0, 50 * 32, 32))) == 50


@pytest.mark.parametrize("group", GROUPS)
def test_compute_backend_split_is_byte_identical(group, monkeypatch):
    """Blinding and exponentiation split over the party's worker pool give exactly the in-process bytes."""
    from fedcredit.crypto import parallel

    monkeypatch.setattr(parallel, "pool_size", lambda: 2)  # the machine may have one core; the split is what is tested
    g = get_group(group)
    a, b = g.new_key(), g.new_key()
    ids = normalize_ids([f"id-{i}" for i in range(301)])
    salt = b"s" * 16
    one = g.blind(a, ids, salt, parallel=False)
    split = g.blind(a, ids, salt, parallel=True)
    assert split == one
    assert g.exp(b, split, parallel=True) == g.exp(b, one, parallel=False)


def test_compute_backend_split_rejects_an_invalid_peer_point(monkeypatch):
    from fedcredit.crypto import parallel

    monkeypatch.setattr(parallel, "pool_size", lambda: 2)
    g = get_group("curve25519")
    k = g.new_key()
    good = g.blind(k, normalize_ids([f"id-{i}" for i in range(9)]), b"s" * 16)
    with pytest.raises(ProtocolError, match="not a point of Curve25519"):
        g.exp(k, good + _twist_point(), parallel=True)  # the bad point lands in the second worker's slice
    with pytest.raises(ProtocolError, match="not a whole number of 32-byte points"):
        g.exp(k, good + b"\x01", parallel=True)  # checked before any work is split


def _ladder(k: int, u: int) -> int | None:
    """Montgomery x-only ladder (RFC 7748 without clamping); None for the point at infinity."""
    a24 = 121665
    x1, x2, z2, x3, z3, swap = u, 1, 0, u, 1, 0
    for t in reversed(range(k.bit_length())):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        A, B = (x2 + z2) % P, (x2 - z2) % P
        AA, BB = A * A % P, B * B % P
        E = (AA - BB) % P
        C, D = (x3 + z3) % P, (x3 - z3) % P
        DA, CB = D * A % P, C * B % P
        x3, z3 = (DA + CB) ** 2 % P, x1 * (DA - CB) ** 2 % P
        x2, z2 = AA * BB % P, E * (AA + a24 * E) % P
    if swap:
        x2, z2 = x3, z3
    return None if z2 == 0 else x2 * pow(z2, P - 2, P) % P


def test_curve25519_wire_points_lie_in_the_prime_order_subgroup():
    L = 2**252 + 27742317777372353535851937790883648493
    g = get_group("curve25519")
    k = g.new_key()
    ids = normalize_ids([f"id-{i}" for i in range(8)])
    hashed = g.hash_points(ids, b"s" * 16)
    blinded = g.blind(k, ids, b"s" * 16)
    for i in range(8):
        u = int.from_bytes(blinded[32 * i : 32 * i + 32], "little")
        assert _ladder(L, u) is None  # order L
        h = int.from_bytes(hashed[i], "little")
        assert _ladder(8 * L, h) is None  # on the curve (a twist point has another order)


def test_key_is_secret():
    k = get_group("curve25519").new_key()
    assert "redacted" in repr(k)
    with pytest.raises(TypeError, match="secret and cannot be pickled"):
        pickle.dumps(k)


def test_match_points_including_prefix_collisions():
    rng = np.random.default_rng(1)
    theirs = rng.integers(0, 256, size=(100, 32), dtype=np.uint8)
    mine = np.concatenate([theirs[[5, 40, 7]], rng.integers(0, 256, size=(4, 32), dtype=np.uint8)])
    i, j = match_points(mine.tobytes(), theirs.tobytes())
    assert i.tolist() == [0, 1, 2] and j.tolist() == [5, 40, 7]
    theirs[9, :8] = theirs[5, :8]  # same 8-byte prefix, different point: the exact fallback
    mine[3, :8] = theirs[5, :8]
    i, j = match_points(mine.tobytes(), theirs.tobytes())
    assert i.tolist() == [0, 1, 2] and j.tolist() == [5, 40, 7]
    assert [len(x) for x in match_points(b"", theirs.tobytes())] == [0, 0]


def test_secure_permutation():
    p = secure_permutation(1000)
    assert sorted(p.tolist()) == list(range(1000)) and p.tolist() != list(range(1000))
    assert (secure_permutation(500, b"k" * 32) == secure_permutation(500, b"k" * 32)).all()
    assert (secure_permutation(500, b"k" * 32) != secure_permutation(500, b"j" * 32)).any()


def test_unknown_group():
    with pytest.raises(ConfigError, match="unknown PSI group 'p256'"):
        get_group("p256")


# ------------------------------------------------------------------ step ----
def _ctx(hub, party, roles, table, params=None, policy=None):
    return StepContext(job_id="j1", step="psi", kind="psi", party=party, roles=roles, params=params or {},
                       channel=hub.channel(party).sub("j1", "psi"), data=table, policy=policy)


def test_step_run_sets_state_and_aligns_tables(rng):
    sets = _sets(rng, {"bank": 120, "gov": 90, "chain": 80}, 25)
    roles = {"bank": "guest", "gov": "host", "chain": "host"}
    tables = {p: Table.from_arrays(p, ids, np.arange(len(ids), dtype=float), ["row"]) for p, ids in sets.items()}
    hub = MemoryHub(list(sets))
    ctxs = {p: _ctx(hub, p, roles, tables[p], {"chunk_size": 1024}) for p in sets}
    out = run_local({p: (lambda ch, p=p: run(ctxs[p])) for p in sets}, hub=hub)
    assert {p: o["intersection"] for p, o in out.items()} == {"bank": 25, "gov": 25, "chain": 25}
    assert out["bank"]["own_rows"] == 120 and set(out["bank"]["pairwise"]) == {"gov", "chain"}
    seqs = [list(ctxs[p].aligned.ids) for p in sets]
    assert seqs[0] == seqs[1] == seqs[2] and len(seqs[0]) == 25
    for p in sets:  # the table rows follow the ids
        t = ctxs[p].aligned
        assert [sets[p][int(r)] for r in t.X[:, 0]] == list(t.ids)


def test_step_rejects_bad_params():
    hub = MemoryHub(["bank", "gov"])
    t = Table.from_arrays("bank", ["a"], [[0.0]], ["x"])
    with pytest.raises(ConfigError, match="The 'reveal' parameter of PSI must be"):
        run(_ctx(hub, "bank", {"bank": "guest", "gov": "host"}, t, {"reveal": "all"}))


def test_step_policy_and_progress(rng):
    from types import SimpleNamespace

    sets = _sets(rng, {"bank": 60, "gov": 50}, 20)
    roles = {"bank": "guest", "gov": "host"}
    hub = MemoryHub(list(sets))
    seen = []
    ctxs = {p: _ctx(hub, p, roles, Table.from_arrays(p, ids, np.zeros(len(ids)), ["x"]),
                    {"mode": "cardinality"}, SimpleNamespace(min_intersection=21 if p == "gov" else 1))
            for p, ids in sets.items()}
    ctxs["bank"].progress = lambda msg, frac=None: seen.append((msg, frac))
    with pytest.raises(PolicyError, match="gov's policy requires at least 21 common rows; the intersection size is 20"):
        run_local({p: (lambda ch, p=p: run(ctxs[p])) for p in sets}, hub=hub, timeout=20)
    assert seen and all(0 <= f <= 1 for _, f in seen)
    assert "table" not in ctxs["bank"].state
