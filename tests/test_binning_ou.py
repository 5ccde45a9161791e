"""Federated WOE binning with Okamoto-Uchiyama (``he = "ou"``): lossless, and safe against OU's key recovery.

OU's pitfall (docs/crypto.md, "OU"): whoever has the key owner decrypt a ciphertext of some ``M >= p`` it
built, and learns ``M mod p``, factors ``n``. In binning the guest (key owner) decrypts the hosts' event
counts and sends WOE/IV, functions of them, back to the host that built the ciphertexts. The guest
therefore decrypts under its own tightest bound (``bound_bits`` of the aligned row count) and checks
every count against its bin's total before any WOE leaves; these tests run the attack and check that
nothing derived from a crafted plaintext reaches the host.
"""

from __future__ import annotations

from dataclasses import replace

import gmpy2
import numpy as np
import pytest

from fedcredit.crypto import ou
from fedcredit.crypto.blob import CipherBlob
from fedcredit.data import Table
from fedcredit.errors import ConfigError, PeerError, ProtocolError
from fedcredit.models.woe import fit_woe
from fedcredit.protocols.binning import BinningParams, run_guest, run_host
from fedcredit.protocols.binning import run as binning_run
from fedcredit.protocols.context import StepContext
from fedcredit.testing import small_keypair, small_ou_keypair
from fedcredit.transport import serde
from fedcredit.transport.memory import MemoryHub, run_local

#: The guest's key per scheme (OU: 1024-bit ``p^2 q``, 341-bit ``p``, a 277-bit guarded plaintext space).
KEYS = {"paillier": lambda: small_keypair(512), "ou": lambda: small_ou_keypair(1024)}


def _tables(seed=0, n=600):
    r = np.random.default_rng(seed)
    ids = [f"id{i}" for i in range(n)]
    xg = r.normal(size=(n, 2))
    xh = np.c_[r.normal(size=n), r.integers(0, 5, n).astype(float), r.exponential(size=n)]
    xh[r.random(n) < 0.05, 2] = np.nan  # ~30 missing: merged below a min count of 40
    xh[r.random(n) < 0.2, 0] = np.nan  # ~120 missing: own bin
    z = xg[:, 0] + 0.8 * np.nan_to_num(xh[:, 0]) + 0.3 * xh[:, 1]
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    sw = np.round(r.uniform(0.1, 3.0, n) * 64) / 64  # on the 2**-16 grid: weighted sums are exact
    g = Table.from_arrays("bank", ids, xg, ["a", "b"], y=y)
    h = Table.from_arrays("gov", ids, xh, ["c", "cat", "e"])
    return g, h, y, sw


class _Tamper:
    """A party's channel whose outgoing messages are rewritten by ``fn(tag, msg) -> msg``."""

    def __init__(self, ch, fn):
        self._ch, self._fn = ch, fn

    def __getattr__(self, name):
        return getattr(self._ch, name)

    def send(self, peer, tag, obj):
        self._ch.send(peer, tag, self._fn(tag, obj))


def _run(he, g, h, params, *, sample_weight=None, host_fn=None, guest_fn=None, hub=None):
    hub = hub or MemoryHub(["bank", "gov"])
    keypair = KEYS[he]()
    params = replace(params, he=he)
    out = run_local({
        "bank": lambda ch: run_guest(guest_fn(ch) if guest_fn else ch, ["gov"], g, params, keypair=keypair,
                                     sample_weight=sample_weight),
        "gov": lambda ch: run_host(host_fn(ch) if host_fn else ch, "bank", h, params),
    }, hub=hub, timeout=120)
    return out, hub


def _assert_same_bins(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for f in a:
        np.testing.assert_array_equal(a[f].counts, b[f].counts)
        np.testing.assert_array_equal(a[f].edges, b[f].edges)
        np.testing.assert_allclose(a[f].woe, b[f].woe, rtol=0, atol=atol)
        np.testing.assert_allclose(a[f].iv, b[f].iv, rtol=0, atol=atol)


@pytest.mark.parametrize("method, min_bin_count", [("quantile", 1), ("monotonic", 40)])
def test_ou_binning_equals_paillier_and_centralized(method, min_bin_count):
    g, h, y, _ = _tables()
    params = BinningParams(method=method, max_bins=8, min_bin_count=min_bin_count, categorical=["cat"])
    res = {he: _run(he, g, h, params)[0] for he in ("ou", "paillier")}
    # exactly the same bins, WOE and IV under both schemes (integer counts: no rounding anywhere)
    _assert_same_bins(res["ou"]["bank"]["bins"], res["paillier"]["bank"]["bins"])
    _assert_same_bins(res["ou"]["gov"], res["paillier"]["gov"])
    assert res["ou"]["bank"]["host_iv"] == res["paillier"]["bank"]["host_iv"]
    # ... and as the centralized computation on the joined data
    for table, bins in ((g, res["ou"]["bank"]["bins"]), (h, res["ou"]["gov"])):
        ref = {name: fit_woe(table.X[:, j], y, name=name, method=method, max_bins=8, min_bin_count=min_bin_count,
                             categorical=name.endswith(".cat")) for j, name in enumerate(table.feature_names)}
        _assert_same_bins(bins, ref, atol=1e-12)


def test_ou_weighted_binning_equals_paillier():
    g, h, y, sw = _tables(1)
    params = BinningParams(max_bins=8, min_bin_count=40, class_weight="balanced")
    res = {he: _run(he, g, h, params, sample_weight=sw)[0] for he in ("ou", "paillier")}
    _assert_same_bins(res["ou"]["gov"], res["paillier"]["gov"])
    assert res["ou"]["bank"]["host_iv"] == res["paillier"]["bank"]["host_iv"]


def test_ou_binning_step_sends_an_ou_key_and_ou_ciphertexts(monkeypatch):
    """``he = "ou"`` in the step parameters: the guest makes an OU key, the wire carries OU blobs only."""
    g, h, y, _ = _tables(2)
    monkeypatch.setattr(ou, "generate_keypair", lambda bits=2048: small_ou_keypair(1024))
    roles = {"bank": "guest", "gov": "host"}
    tables = {"bank": g, "gov": h}
    states = {"bank": {}, "gov": {}}
    hub = MemoryHub(["bank", "gov"])
    params = {"max_bins": 8, "min_bin_count": 40, "he": "ou"}
    run_local({p: (lambda ch, p=p: binning_run(StepContext(
        job_id="j", step="bin", kind="binning", party=p, roles=roles, params=params, channel=ch,
        data=tables[p], state=states[p]))) for p in roles}, hub=hub, timeout=120)
    msgs = {t: serde.decode(pl) for s, r, t, pl in hub.captured}
    assert msgs["key"]["public_key"]["scheme"] == "ou"
    for tag, field in (("labels", "labels"), ("counts", "events")):
        blob = msgs[tag][field]
        assert isinstance(blob, CipherBlob) and blob.scheme == "ou"
    assert set(states["gov"]["binning"]["bins"]) == {"gov.c", "gov.cat", "gov.e"}
    assert np.asarray(y, dtype=np.int8).tobytes() not in b"".join(pl for *_, pl in hub.captured)


def test_he_parameter_is_validated():
    assert BinningParams.from_dict({"he": "ou"}).he == "ou"
    assert BinningParams().he == "paillier"
    with pytest.raises(ConfigError, match="'he'"):
        BinningParams.from_dict({"he": "rsa"})


def _forge_first_event(pk, M, r=12345):
    """A host's COUNTS rewriter: the first bin's encrypted event count replaced by an encryption of ``M``."""
    c = int(gmpy2.powmod(pk.g, M, pk.n) * gmpy2.powmod(pk.h, r, pk.n) % pk.n)

    def fn(tag, msg):
        if tag != "counts":
            return msg
        cs = [int(x) for x in msg["events"].ciphertexts()]
        return dict(msg, events=pk.vector_from_raw([c] + cs[1:]).to_blob())
    return fn


@pytest.mark.parametrize("crafted", ["blind_above_p", "residue_above_bound", "residue_above_total",
                                     "residue_inside_total"])
def test_ou_guest_refuses_a_crafted_count_and_no_woe_reaches_the_host(crafted):
    """The OU key-recovery attack on binning: a host returns, as its first bin's event count, ``E(M)``, ``M >= p``.

    * ``blind_above_p``: ``M = 2^|p| - 1``, what a host that does not know ``p`` would send. Against an
      unguarded decryption (the old Paillier-only code path, or a guard at the full 277-bit space
      that a crafted residue passes with small probability), the WOE returned would be a function of
      ``M mod p``, and ``gcd(M - (M mod p), n)`` is a factor of ``n`` -- asserted below.
    * ``residue_above_bound``: ``M = p + 2^bound_bits``: the residue is just above the guest's tight
      guard (the row count's bit length), refused by the guarded decryption.
    * ``residue_above_total``: ``M = p + total + 1`` for the first bin: the residue passes the
      bit-length guard but exceeds that bin's declared total, refused by the range check.
    * ``residue_inside_total``: ``M = p + r`` with ``r`` a wrong but plausible count (``0 <= r <= total``):
      refused because the feature's event counts no longer add up to the events the guest encrypted.

    In every case the guest stops with a ProtocolError naming neither ``M`` nor the residue, and the host
    receives no RESULT: no WOE or IV derived from the crafted count leaves the guest.
    """
    g, h, _, _ = _tables(3)
    pk, sk = KEYS["ou"]()
    p = sk._p  # the test knows the key; an attacker does not (it can only make the blind case)
    params = BinningParams(max_bins=8, min_bin_count=40)
    honest, _ = _run("ou", g, h, params)
    first = honest["bank"]["host_bins"][h.feature_names[0]]
    totals, true_events = first["totals"], first["events"]  # the host's plain totals, first feature
    wrong = int(true_events[0]) + 1 if true_events[0] < totals[0] else int(true_events[0]) - 1
    bound_bits = len(g).bit_length()
    M = {"blind_above_p": (1 << pk.p_bits) - 1,
         "residue_above_bound": p + (1 << bound_bits),
         "residue_above_total": p + int(totals[0]) + 1,
         "residue_inside_total": p + wrong}[crafted]
    residue = sk._decrypt_unchecked(pk.vector_from_raw([int(gmpy2.powmod(pk.g, M, pk.n))]))[0]
    assert M >= p and residue == M % p
    if crafted == "blind_above_p":
        f = gmpy2.gcd(M - residue, pk.n)
        assert f not in (1, pk.n)  # what an answered decryption would give away: a factor of n
    if crafted == "residue_above_total":
        assert int(totals[0]) < residue < (1 << bound_bits)  # inside the guard's window: the range check refuses

    hub = MemoryHub(["bank", "gov"])
    with pytest.raises(ProtocolError, match="event counts from 'gov'") as info:
        _run("ou", g, h, params, host_fn=lambda ch: _Tamper(ch, _forge_first_event(pk, M)), hub=hub)
    text = str(info.value)
    assert str(M) not in text and str(residue) not in text and str(p) not in text
    # the host got the key and the encrypted labels, and nothing after its counts
    to_host = [t for s, r, t, _ in hub.captured if r == "gov"]
    assert to_host == ["key", "labels"]


def test_ou_totals_that_do_not_add_up_are_refused():
    """A host cannot widen the guest's bound by declaring larger totals: each feature's totals add up to the rows."""
    g, h, _, _ = _tables(4)

    def inflate(tag, msg):
        if tag != "counts":
            return msg
        t = msg["totals"].copy()
        t[0] += 1 << 40
        return dict(msg, totals=t)

    with pytest.raises(ProtocolError, match="do not add up to the aligned rows"):
        _run("ou", g, h, BinningParams(max_bins=8, min_bin_count=40), host_fn=lambda ch: _Tamper(ch, inflate))


def _key_rewriter(fn):
    def rewrite(tag, msg):
        return dict(msg, public_key=fn(dict(msg["public_key"]))) if tag == "key" else msg
    return rewrite


@pytest.mark.parametrize("case", ["h_not_g_to_the_n", "wrong_length", "paillier_key_for_an_ou_job"])
def test_host_refuses_a_malformed_ou_key(case):
    g, h, _, _ = _tables(5)
    pk_p, _ = small_keypair(512)

    def bad(w):
        if case == "h_not_g_to_the_n":
            w["h"] = w["g"]  # h must be g^n mod n
        elif case == "wrong_length":
            w["g"] = w["g"][1:]
        else:
            w = pk_p.to_wire()
        return w

    with pytest.raises(ProtocolError, match="binning") as info:
        _run("ou", g, h, BinningParams(max_bins=8, min_bin_count=40),
             guest_fn=lambda ch: _Tamper(ch, _key_rewriter(bad)))
    assert not isinstance(info.value, PeerError)  # refused by the host itself, before it encrypted anything


def test_decrypt_counts_guards_ou_with_the_tightest_bound_bits(monkeypatch):
    """The guest's bound (rows it knows) becomes OU's ``bound_bits``; one value above it fails the whole vector."""
    from fedcredit.protocols.binning.guest import decrypt_counts

    pk, sk = KEYS["ou"]()
    seen = []
    real = type(sk).decrypt_ints
    monkeypatch.setattr(type(sk), "decrypt_ints", lambda self, cv, **kw: seen.append(kw) or real(self, cv, **kw))
    ok = pk.encrypt_ints([0, 3, 600]).to_blob()
    assert decrypt_counts(sk, pk, ok, 600, "gov", "event counts").tolist() == [0, 3, 600]
    assert seen == [{"bound_bits": 10}]  # 600 < 2^10
    for bad in ([0, 601], [1024, 0], [-1, 0]):
        with pytest.raises(ProtocolError, match="not valid bin sums"):
            decrypt_counts(sk, pk, pk.encrypt_ints(bad).to_blob(), 600, "gov", "event counts")


def test_ou_binning_with_label_dp_checks_the_noisy_event_total():
    """Label DP: the hosts sum randomized-response labels; the guest's sum check uses what it encrypted."""
    g, h, _, _ = _tables(6)
    out, _ = _run("ou", g, h, BinningParams(max_bins=8, min_bin_count=200, label_epsilon=1.0))
    assert set(out["gov"]) == {"gov.c", "gov.cat", "gov.e"}
    for info in out["bank"]["host_bins"].values():
        assert np.all((info["events"] >= 0) & (info["events"] <= info["totals"]))
