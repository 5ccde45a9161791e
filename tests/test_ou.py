"""Okamoto-Uchiyama backend: round trips, homomorphic ops, histogram kernel, blobs,
the key-recovery guard and re-randomization (attack tests on small keys)."""

from __future__ import annotations

import pickle
import secrets
from dataclasses import replace

import gmpy2
import numpy as np
import pytest

from fedcredit.crypto import ou
from fedcredit.crypto.blob import CipherBlob
from fedcredit.errors import ConfigError, DataError, DecryptionError
from fedcredit.testing import small_ou_keypair


def _small_ou_keypair(bits: int = 768):
    """An insecure OU key for logic tests, fresh each call (``fedcredit.testing.small_ou_keypair`` caches them)."""
    return small_ou_keypair(bits, cached=False)


@pytest.fixture(scope="module")
def keys():
    return _small_ou_keypair(768)


@pytest.fixture(scope="module")
def other_keys():
    return _small_ou_keypair(768)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("who", ["owner", "public"])
def test_int_round_trip(keys, who):
    pk, sk = keys
    top = (1 << pk.plaintext_bits) - 1
    vals = [0, 1, 2, 12345, -1, -98765, top, -top]
    cv = (sk if who == "owner" else pk).encrypt_ints(vals)
    assert len(cv) == len(vals) and cv.is_fresh
    assert sk.decrypt_signed(cv) == vals
    assert sk.decrypt_ints((sk if who == "owner" else pk).encrypt_ints(np.arange(5, dtype=np.uint8))) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("who", ["owner", "public"])
def test_fixed_point_round_trip_negative(keys, who):
    pk, sk = keys
    x = np.array([-3.25, -1e-6, 0.0, 0.5, 1234.125, -987.0625])
    cv = (sk if who == "owner" else pk).encrypt(x, frac_bits=24)
    assert cv.frac_bits == 24
    np.testing.assert_allclose(sk.decrypt(cv), x, atol=2**-24)


def test_plaintext_range_enforced_at_encryption(keys):
    pk, sk = keys
    for v in (1 << pk.plaintext_bits, -(1 << pk.plaintext_bits)):
        with pytest.raises(DataError):
            pk.encrypt_ints([v])
        with pytest.raises(DataError):
            sk.encrypt_ints([v])
    with pytest.raises(ConfigError):
        pk.encrypt_ints([1.5])


def test_owner_and_public_ciphertexts_are_probabilistic(keys):
    pk, sk = keys
    a, b = sk.encrypt_ints([7, 7]).ciphertexts()
    c, d = pk.encrypt_ints([7, 7]).ciphertexts()
    assert len({a, b, c, d}) == 4


# ---------------------------------------------------------------- homomorphic ops
def test_add_sub_scalar_mul(keys):
    pk, sk = keys
    a = [5, -7, 100, 0]
    b = [3, 4, -250, 9]
    ca, cb = sk.encrypt_ints(a), pk.encrypt_ints(b)
    assert sk.decrypt_signed(ca + cb) == [x + y for x, y in zip(a, b)]
    assert sk.decrypt_signed(ca - cb) == [x - y for x, y in zip(a, b)]
    assert sk.decrypt_signed(-ca) == [-x for x in a]
    assert sk.decrypt_signed(ca + cb[1]) == [x + b[1] for x in a]  # broadcast a length-1 vector
    assert sk.decrypt_signed(ca.mul_plain(-3)) == [-3 * x for x in a]
    assert sk.decrypt_signed(ca.mul_plain([1, 2, -3, 4])) == [5, -14, -300, 0]
    assert sk.decrypt_signed(ca.add_plain([1, -1, 1, -1])) == [6, -8, 101, -1]
    assert sk.decrypt_signed(ca.sum()) == [sum(a)]
    assert sk.decrypt_signed(ca.dot([1, 1, 1, 1])) == [sum(a)]
    assert sk.decrypt_signed(ou.concat([ca, cb])) == a + b


def test_fixed_point_ops_align_scales(keys):
    pk, sk = keys
    x = np.array([1.5, -2.0, 0.25])
    cx = sk.encrypt(x, frac_bits=8)
    cy = pk.encrypt(x, frac_bits=16)
    np.testing.assert_allclose(sk.decrypt(cx + cy), 2 * x)
    np.testing.assert_allclose(sk.decrypt(cx.mul_plain(0.5, frac_bits=8)), 0.5 * x)
    np.testing.assert_allclose(sk.decrypt(cx.add_plain(np.array([1.0, 1.0, 1.0]))), x + 1)


def test_vectors_under_different_keys_refused(keys, other_keys):
    pk, sk = keys
    opk, osk = other_keys
    a, b = pk.encrypt_ints([1]), opk.encrypt_ints([1])
    with pytest.raises(ConfigError):
        a + b
    with pytest.raises(DecryptionError):
        sk.decrypt_ints(b)


# ---------------------------------------------------------------- histogram kernel
@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_histogram_equals_plaintext_reference(keys, dtype):
    pk, sk = keys
    rng = np.random.default_rng(7)
    rows, feats, n_bins = 300, 4, 16
    g = rng.integers(-(2**40), 2**40, size=rows)
    bins = rng.integers(0, n_bins, size=(rows, feats)).astype(dtype)
    bins[:, 3] = 2  # a feature whose other bins are all empty
    hist = sk.encrypt_ints(g).histogram(bins, n_bins)
    assert len(hist) == feats * n_bins and not hist.is_fresh
    ref = np.zeros((feats, n_bins), dtype=object)
    for j in range(feats):
        np.add.at(ref[j], bins[:, j].astype(np.int64), g.astype(object))
    assert sk.decrypt_signed(hist) == [int(v) for v in ref.ravel()]
    # group_sum is the one-feature case
    assert sk.decrypt_signed(sk.encrypt_ints(g).group_sum(bins[:, 0], n_bins)) == [int(v) for v in ref[0]]


def test_heu_accelerator_matches_gmpy2_kernel(keys):
    pytest.importorskip("heu")
    pk, sk = keys
    rng = np.random.default_rng(3)
    rows, feats, n_bins = 200, 5, 8
    g = rng.integers(-(2**30), 2**30, size=rows)
    bins = rng.integers(0, n_bins, size=(rows, feats)).astype(np.uint8)
    bins[:, 4] = 7
    cv = pk.encrypt_ints(g)
    fast = cv.histogram(bins, n_bins, kernel="heu")
    assert fast.ciphertexts() == cv.histogram(bins, n_bins, kernel="gmpy2").ciphertexts()
    ref = np.zeros((feats, n_bins), dtype=object)
    for j in range(feats):
        np.add.at(ref[j], bins[:, j].astype(np.int64), g.astype(object))
    assert sk.decrypt_signed(fast) == [int(v) for v in ref.ravel()]


def test_heu_bridge_unused_when_its_self_check_fails(monkeypatch):
    pytest.importorskip("heu")
    from fedcredit.crypto import _ou_heu

    pk, _ = _small_ou_keypair(768)  # a key no bridge was built for yet
    monkeypatch.setattr(_ou_heu._Bridge, "self_check", lambda self: False)
    assert _ou_heu.bridge_for(pk.n, pk.g, pk.h, pk.plaintext_bits) is None
    with pytest.raises(ConfigError):
        pk.encrypt_ints([1]).histogram(np.zeros((1, 1), dtype=np.uint8), 2, kernel="heu")


def test_unusable_accelerator_is_a_config_error_not_a_silent_switch(keys, monkeypatch):
    from fedcredit.crypto import _ou_heu

    pk, sk = keys
    cv = sk.encrypt_ints([1, 2, 3])
    bins = np.array([[0], [1], [0]], dtype=np.uint8)
    ref = cv.histogram(bins, 2).ciphertexts()

    class Broken:
        def bucket_sums(self, *args):
            raise RuntimeError("format changed")

    for bridge in (Broken(), None):
        monkeypatch.setattr(_ou_heu, "bridge_for", lambda *args, b=bridge: b)
        assert cv.histogram(bins, 2).ciphertexts() == ref  # the default kernel never touches HEU
        with pytest.raises(ConfigError):
            cv.histogram(bins, 2, kernel="heu")


def test_unknown_kernel_refused(keys):
    pk, sk = keys
    with pytest.raises(ConfigError):
        sk.encrypt_ints([1]).histogram(np.zeros((1, 1), dtype=np.uint8), 2, kernel="cuda")


@pytest.mark.parametrize(
    "bins, n_bins",
    [(np.zeros((3, 2), dtype=np.float64), 4), (np.full((3, 2), 4, dtype=np.uint8), 4), (np.zeros(3, dtype=np.uint8), 4), (np.zeros((2, 2), dtype=np.uint8), 4)],
)
def test_histogram_refuses_bad_bins(keys, bins, n_bins):
    pk, sk = keys
    with pytest.raises(ConfigError):
        sk.encrypt_ints([1, 2, 3]).histogram(bins, n_bins)


# ---------------------------------------------------------------- wire
def test_blob_round_trip_fixed_width(keys):
    pk, sk = keys
    cv = sk.encrypt(np.array([0.5, -1.25, 3.0]), frac_bits=10)
    blob = cv.to_blob()
    assert blob.scheme == "ou" and blob.width == pk.width == (pk.n.bit_length() + 7) // 8
    assert len(blob.data) == blob.count * blob.width == 3 * pk.width
    assert blob.data[: pk.width] == cv.ciphertexts()[0].to_bytes(pk.width, "big")  # fresh: sent as is
    back = pk.vector_from_blob(blob)
    assert back.frac_bits == 10 and not back.is_fresh
    np.testing.assert_allclose(sk.decrypt(back), [0.5, -1.25, 3.0])
    # a derived vector is re-randomized before it leaves
    s = (back + back).sum()
    sblob = s.to_blob()
    assert int.from_bytes(sblob.data, "big") != s.ciphertexts()[0]
    np.testing.assert_allclose(sk.decrypt(pk.vector_from_blob(sblob)), [2 * (0.5 - 1.25 + 3.0)])
    # the public key itself round-trips
    assert ou.PublicKey.from_wire(pk.to_wire()) == pk


def test_blob_and_key_cross_the_wire_serde(keys):
    from fedcredit.transport import serde

    pk, sk = keys
    blob = (sk.encrypt_ints([4, -9]) + pk.encrypt_ints([1, 1])).to_blob()
    wire = serde.decode(serde.encode({"key": pk.to_wire(), "hist": blob}))
    assert ou.PublicKey.from_wire(wire["key"]) == pk
    assert sk.decrypt_signed(pk.vector_from_blob(wire["hist"])) == [5, -8]


def _tamper(pk, sk, blob, how):
    w = pk.width
    if how == "width":
        return replace(blob, width=w + 1, data=blob.data + b"\0" * blob.count)
    if how == "truncated":
        return replace(blob, data=blob.data[:-1])
    if how == "zero":
        return replace(blob, data=b"\0" * w + blob.data[w:])
    if how == "equal_n":
        return replace(blob, data=pk.n.to_bytes(w, "big") + blob.data[w:])
    if how == "above_n":
        return replace(blob, data=b"\xff" * w + blob.data[w:])
    if how == "not_unit":
        return replace(blob, data=(sk._p * 12345).to_bytes(w, "big") + blob.data[w:])
    if how == "fingerprint":
        return replace(blob, key_fingerprint=bytes(32))
    if how == "scheme":
        return replace(blob, scheme="paillier")
    if how == "frac_bits":
        return replace(blob, meta={"frac_bits": -1})
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["width", "truncated", "zero", "equal_n", "above_n", "not_unit", "fingerprint", "scheme", "frac_bits"])
def test_malformed_blobs_refused(keys, how):
    pk, sk = keys
    blob = sk.encrypt_ints([1, 2]).to_blob()
    with pytest.raises(DecryptionError):
        pk.vector_from_blob(_tamper(pk, sk, blob, how))


def test_blob_of_other_key_refused(keys, other_keys):
    pk, _ = keys
    opk, _ = other_keys
    with pytest.raises(DecryptionError):
        pk.vector_from_blob(opk.encrypt_ints([1]).to_blob())
    with pytest.raises(DecryptionError):
        pk.vector_from_blob(CipherBlob("ou", pk.fingerprint, pk.width, 1, b"x"))


def test_public_key_checks():
    with pytest.raises(ConfigError):
        ou.generate_keypair(1024)
    pk, sk = _small_ou_keypair(768)
    wire = pk.to_wire()
    with pytest.raises(ConfigError):  # h must be g^n
        ou.PublicKey.from_wire({**wire, "h": (pk.h + 1).to_bytes(pk.width, "big")})
    with pytest.raises(ConfigError):  # a small key that no test in this process made
        ou.PublicKey(pk.n + 2, pk.g, pk.h)
    with pytest.raises(TypeError):
        pickle.dumps(sk)
    assert str(sk._p) not in repr(sk) and str(sk._p) not in repr(pk)


def test_default_key_size():
    pk, sk = ou.generate_keypair()
    assert pk.bits == 2048 and pk.p_bits == 683 and pk.plaintext_bits == 618 and pk.width == 256
    assert sk.decrypt_signed(sk.encrypt_ints([1, -2]) + pk.encrypt_ints([40, 2])) == [41, 0]


# ---------------------------------------------------------------- key-recovery guard
def _craft(pk, M):
    """What any party can do with the public key: an encryption of an arbitrary M."""
    r = secrets.randbits(pk.r_bits)
    return pk.vector_from_raw([gmpy2.powmod(pk.g, M, pk.n) * gmpy2.powmod(pk.h, r, pk.n) % pk.n])


def test_key_recovery_attack_is_refused(keys):
    pk, sk = keys
    p = sk._p
    M = (1 << pk.p_bits) + secrets.randbits(pk.p_bits)  # > p, as p < 2^p_bits
    crafted = _craft(pk, M)
    # Without the guard, the decrypted value M mod p hands the attacker a multiple of p.
    leaked = sk._decrypt_unchecked(crafted)[0]
    f = int(gmpy2.gcd(M - leaked, pk.n))
    assert 1 < f < pk.n and f % p == 0 and pk.n % f == 0  # n is factored
    # The public decryption paths release nothing.
    for decrypt in (sk.decrypt_ints, sk.decrypt_signed, sk.decrypt):
        with pytest.raises(DecryptionError):
            decrypt(crafted)
    # ... not even the honest values next to a crafted one (all or nothing).
    mixed = ou.concat([sk.encrypt_ints([1, 2]), crafted, pk.encrypt_ints([3])])
    with pytest.raises(DecryptionError):
        sk.decrypt_signed(mixed)


def test_guard_refuses_values_between_bound_and_p(keys):
    pk, sk = keys
    bound = 1 << pk.plaintext_bits
    for m in (bound, sk._p - bound, sk._p // 2):
        with pytest.raises(DecryptionError):
            sk.decrypt_signed(_craft(pk, m))
    # a homomorphic blow-up past the bound is refused too
    big = sk.encrypt_ints([(1 << pk.plaintext_bits) - 1]).mul_plain(1 << 40)
    with pytest.raises(DecryptionError):
        sk.decrypt_ints(big)
    # a declared tighter bound
    cv = sk.encrypt_ints([1023, 1024])
    assert sk.decrypt_ints(cv[0], bound_bits=10) == [1023]
    with pytest.raises(DecryptionError):
        sk.decrypt_ints(cv, bound_bits=10)
    with pytest.raises(ConfigError):
        sk.decrypt_ints(cv, bound_bits=pk.plaintext_bits + 1)


# ---------------------------------------------------------------- re-randomization
def test_rerandomization_changes_ciphertexts_not_plaintexts(keys):
    pk, sk = keys
    cv = pk.encrypt_ints([5, -6, 0]) + sk.encrypt_ints([1, 1, 1])
    for r in (cv.obfuscate(), cv.obfuscate(parallel=True), cv.obfuscate(for_key_owner=False), sk.obfuscate(cv)):
        assert r.is_fresh
        assert all(a != b for a, b in zip(r.ciphertexts(), cv.ciphertexts()))
        assert sk.decrypt_signed(r) == [6, -5, 1]


def test_precomputed_obfuscators_are_used_once(keys):
    pk, sk = keys
    pk.precompute_obfuscators(3)
    pool = list(pk._obf_pool)
    cv = sk.encrypt_ints([1, 2])
    r1 = cv.obfuscate()
    assert len(pk._obf_pool) == 1
    assert r1.ciphertexts() == [c * r % pk.n for c, r in zip(cv.ciphertexts(), pool[:2])]
    r2 = cv.obfuscate()  # one from the pool, one computed on the spot
    assert len(pk._obf_pool) == 0
    assert r2.ciphertexts()[0] == cv.ciphertexts()[0] * pool[2] % pk.n
    assert r2.ciphertexts()[1] != r1.ciphertexts()[1]
    assert sk.decrypt_ints(r1) == sk.decrypt_ints(r2) == [1, 2]
    with pytest.raises(ConfigError):
        pk.precompute_obfuscators(-1)


def test_reserved_obfuscators_are_not_reused_after_fork(keys):
    pk, sk = keys
    pk.precompute_obfuscators(2)
    parent_reserve = list(pk._obf_pool)
    pk._obf_pid = -1  # as seen from a forked child: the reserve belongs to another process
    cv = sk.encrypt_ints([5, 6])
    r = cv.obfuscate(parallel=False)
    assert not set(r.ciphertexts()) & {c * v % pk.n for c, v in zip(cv.ciphertexts(), parent_reserve)}
    assert len(pk._obf_pool) == 0 and sk.decrypt_ints(r) == [5, 6]


def test_background_refill_prepares_fresh_obfuscators(keys, monkeypatch):
    pk, sk = keys
    monkeypatch.setattr(ou.keys, "_REFILL_MIN_BITS", 0)
    pk._obf_pool.clear()
    pk._recent = []
    cv = sk.encrypt_ints([1, 2, 3])
    r = cv.obfuscate()  # computes 3 itself, then starts a refill of 3
    pk._refill_thread.join(timeout=30)
    assert len(pk._obf_pool) == 3
    ready = list(pk._obf_pool)
    r2 = cv.obfuscate(parallel=False)  # uses the reserve and does not refill
    assert len(pk._obf_pool) == 0
    assert r2.ciphertexts() == [c * v % pk.n for c, v in zip(cv.ciphertexts(), ready)]
    assert len(set(ready)) == 3 and sk.decrypt_ints(r) == sk.decrypt_ints(r2) == [1, 2, 3]


def test_subgroup_rerandomization_hides_the_sum_of_an_honest_owners_randomness():
    """A key owner that follows the protocol knows each row's r_i; with chi(h) = -1 for the
    Legendre symbol mod q, an unrandomized bin sum shows the parity of sum(r_i) over the rows
    in the bin (a linear equation on membership).  h^r with r uniform (obfuscate(for_key_owner=False))
    and rho^n both make it a fair coin."""
    while True:
        pk, sk = _small_ou_keypair(768)
        q = sk._q
        if gmpy2.legendre(pk.h % q, q) == -1:
            break
    n, rs = pk.n, [2, 4, 6]  # the owner's own even randomness: the raw sum's character is fixed
    rows = pk.vector_from_raw([gmpy2.powmod(pk.g, m, n) * gmpy2.powmod(pk.h, r, n) % n for m, r in zip([3, 4, 5], rs)])
    bin_sum = rows.sum()

    def legendre(cv):
        return int(gmpy2.legendre(cv.ciphertexts()[0] % q, q))

    raw = legendre(bin_sum)
    assert all(legendre(rows.sum()) == raw for _ in range(5))  # the sum alone is deterministic
    assert {legendre(bin_sum.obfuscate(for_key_owner=False)) for _ in range(40)} == {-1, 1}
    assert {legendre(bin_sum.obfuscate()) for _ in range(40)} == {-1, 1}


def test_rerandomization_hides_a_marker_from_a_malicious_key_owner():
    """Issue 23 item 5 for OU: a key owner plants a character marker on one row.

    The owner picks a key whose g (hence h = g^n) is a square mod q and multiplies one
    row's ciphertext by z = (1 mod p^2, non-square mod q): same plaintext, but the
    Legendre symbol mod q of any sum containing that row flips.  Re-randomizing with
    h^r (an encryption of 0 under the owner's key) keeps the marker; rho^n with rho
    uniform in Z_n^* (what obfuscate/to_blob use) erases it.
    """
    while True:
        pk, sk = _small_ou_keypair(768)
        p, q = sk._p, sk._q
        if gmpy2.legendre(pk.g % q, q) == 1:
            break
    p2 = p * p
    y = next(v for v in range(2, 1000) if gmpy2.legendre(v, q) == -1)
    z = int(1 + p2 * ((y - 1) * gmpy2.invert(p2, q) % q))  # z = 1 mod p^2, y mod q
    assert z % p2 == 1 and z % q == y
    rows = sk.encrypt_ints([3, 4, 5]).ciphertexts()
    rows[1] = rows[1] * z % pk.n  # the marked row
    marked = pk.vector_from_raw(rows)
    bin_sum = marked[0:2].sum()  # the host's sum over a node that contains the marked row
    assert sk.decrypt_signed(bin_sum) == [7]  # the marker does not change the plaintext

    def legendre(cv):
        return int(gmpy2.legendre(cv.ciphertexts()[0] % q, q))

    # h^r re-randomization (an encryption of 0, or obfuscate(for_key_owner=False)): the marker survives every time
    for _ in range(10):
        assert legendre(bin_sum + pk.encrypt_ints([0])) == -1
        assert legendre(bin_sum.obfuscate(for_key_owner=False)) == -1
    # rho^n re-randomization: the character is uniform, the marker is gone
    seen = {legendre(pk.vector_from_blob(bin_sum.to_blob()))}
    seen |= {legendre(bin_sum.obfuscate()) for _ in range(40)}
    assert seen == {-1, 1}


# ---------------------------------------------------------------- compression
@pytest.mark.parametrize("groups, parallel", [(3, False), (3, True), (18, None)])
def test_compress_round_trip_stays_below_guard(keys, groups, parallel):
    pk, sk = keys
    item_bits = 40
    k = pk.plaintext_bits // item_bits
    items = [secrets.randbits(item_bits) for _ in range((groups - 1) * k + 3)]  # a short last group
    comp = ou.compress(sk.encrypt_ints(items), item_bits=item_bits, parallel=parallel)
    assert len(comp) == groups and not comp.is_fresh
    dec = sk.decrypt_ints(comp)
    assert all(v < (1 << pk.plaintext_bits) for v in dec)
    mask = (1 << item_bits) - 1
    assert [(v >> (i * item_bits)) & mask for v in dec for i in range(k)][: len(items)] == items
    with pytest.raises(ConfigError):
        ou.compress(comp, item_bits=pk.plaintext_bits + 1)


def test_process_pool_encryption_and_histogram_equal_in_process(keys):
    """The key owner's encryption and the bucket sums split over the party's process pool (parallel=True)
    give what the in-process kernels give: the same plaintexts, the same sums."""
    pk, sk = keys
    rng = np.random.default_rng(3)
    m = rng.integers(-(2**40), 2**40, size=40).tolist()
    cv = sk.encrypt_ints(m, parallel=True)
    assert cv.is_fresh and sk.decrypt_signed(cv) == m
    bins = rng.integers(0, 5, size=(40, 3)).astype(np.uint8)
    serial = cv.histogram(bins, 5, parallel=False)
    pooled = cv.histogram(bins, 5, parallel=True)
    assert sk.decrypt_signed(pooled) == sk.decrypt_signed(serial)
    assert sk.decrypt_signed(pooled) == [sum(v for v, b in zip(m, bins[:, j]) if b == k) for j in range(3) for k in range(5)]
