"""Paillier engine: round trips and homomorphic identities against numpy/plain ints."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from phe import paillier as phe_paillier

from fedcredit.crypto import (
    CipherBlob,
    CipherVector,
    FixedPoint,
    PrivateKey,
    PublicKey,
    compress,
    concat,
    generate_keypair,
)
from fedcredit.crypto._raw import FixedBase, short_exponent_bits
from fedcredit.errors import ConfigError, DataError, DecryptionError, ProtocolError
from fedcredit.protocols.secureboost.guest import GHCodec
from fedcredit.protocols.secureboost.spec import GH_BITS
from fedcredit.testing import small_keypair
from fedcredit.transport import serde


@pytest.fixture(scope="module")
def keys():
    return small_keypair(512)


@pytest.fixture(scope="module")
def other_keys():
    return small_keypair(512, index=1)


def _ints(rng, k, n):
    """Random signed ints including zeros and the extremes of (-n/2, n/2]."""
    half = n // 2
    vals = [int(v) for v in rng.integers(-(2**40), 2**40, size=k)]
    vals[:5] = [0, 1, -1, half, -half + 1]
    return vals


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize("bits", [512, 1024, 1536, 2047, -1])
def test_generate_keypair_refuses_small_keys(bits):
    with pytest.raises(ConfigError, match="fedcredit.testing.small_keypair"):
        generate_keypair(bits)


@pytest.mark.parametrize("bits", ["2048", 2048.0, True])
def test_generate_keypair_refuses_non_int(bits):
    with pytest.raises(ConfigError, match="'bits' parameter"):
        generate_keypair(bits)


def test_small_modulus_from_a_peer_is_refused():
    import gmpy2

    n = int(gmpy2.next_prime(2**255) * gmpy2.next_prime(2**256))
    with pytest.raises(ConfigError, match="at least 2048"):
        PublicKey(n)
    with pytest.raises(ConfigError, match="at least 2048"):
        PublicKey.from_wire({"scheme": "paillier", "n": n.to_bytes(64, "big")})


def test_default_2048_bit_key_end_to_end():
    pk, sk = generate_keypair()
    assert pk.bits == 2048 and pk.width == 512
    vals = [0, 5, -7, 2**100]
    cv = sk.encrypt_ints(vals)
    assert sk.decrypt_signed(cv) == vals
    assert sk.decrypt_signed(pk.encrypt_ints(vals) + cv) == [2 * v for v in vals]
    # phe decrypts ours
    phe_sk = sk.to_phe()
    assert [phe_sk.raw_decrypt(c) for c in cv.ciphertexts()][:2] == [0, 5]


def test_wire_form_is_public_only(keys):
    pk, sk = keys
    wire = pk.to_wire()
    assert set(wire) == {"scheme", "n"}
    pk2 = PublicKey.from_wire(serde.decode(serde.encode(wire)))
    assert pk2 == pk and pk2.fingerprint == pk.fingerprint
    assert not hasattr(sk, "to_wire")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(sk)
    assert str(sk._p) not in repr(sk)


def test_phe_key_interop(keys):
    pk, sk = keys
    phe_sk = sk.to_phe()
    assert PrivateKey.from_phe(phe_sk) == sk
    assert PublicKey.from_phe(phe_sk.public_key) == pk


# ------------------------------------------------------------------ integers
@pytest.mark.parametrize("owner", [True, False])
@pytest.mark.parametrize("size", [1, 37])
def test_int_round_trip(keys, rng, owner, size):
    pk, sk = keys
    vals = _ints(rng, max(size, 5), pk.n)[:size] if size >= 5 else [0][:size]
    enc = sk.encrypt_ints if owner else pk.encrypt_ints
    cv = enc(vals, parallel=False)
    assert len(cv) == len(vals)
    assert sk.decrypt_signed(cv, parallel=False) == vals
    assert sk.decrypt_ints(cv) == [v % pk.n for v in vals]


def test_numpy_int_input(keys, rng):
    pk, sk = keys
    a = rng.integers(-1000, 1000, size=20)
    assert sk.decrypt_signed(sk.encrypt_ints(a)) == a.tolist()


def test_ciphertexts_are_randomized(keys):
    pk, sk = keys
    for enc in (sk.encrypt_ints, pk.encrypt_ints):
        cs = enc([7, 7, 7]).ciphertexts()
        assert len(set(cs)) == 3


@pytest.mark.parametrize("bad", [[1.5], ["x"], [True]])
def test_encrypt_ints_rejects_non_ints(keys, bad):
    pk, sk = keys
    with pytest.raises(ConfigError, match="plaintexts must be ints"):
        pk.encrypt_ints(bad)


def test_encrypt_ints_rejects_out_of_range(keys):
    pk, sk = keys
    with pytest.raises(DataError, match="outside"):
        sk.encrypt_ints([pk.n])


def test_homomorphic_identities(keys, rng):
    pk, sk = keys
    a = [int(v) for v in rng.integers(-(10**12), 10**12, size=30)]
    b = [int(v) for v in rng.integers(-(10**12), 10**12, size=30)]
    k = [int(v) for v in rng.integers(-1000, 1000, size=30)]
    ca, cb = sk.encrypt_ints(a), pk.encrypt_ints(b)
    dec = sk.decrypt_signed
    assert dec(ca + cb) == [x + y for x, y in zip(a, b)]
    assert dec(ca - cb) == [x - y for x, y in zip(a, b)]
    assert dec(-ca) == [-x for x in a]
    assert dec(ca.add_plain(b)) == [x + y for x, y in zip(a, b)]
    assert dec(ca.add_plain(5)) == [x + 5 for x in a]
    assert dec(ca.mul_plain(k)) == [x * y for x, y in zip(a, k)]
    assert dec(ca.mul_plain(-3)) == [-3 * x for x in a]
    assert dec(ca.mul_plain(0)) == [0] * 30
    assert dec(ca.sum()) == [sum(a)]
    assert dec(ca.dot(k)) == [sum(x * y for x, y in zip(a, k))]
    assert dec(ca + cb[0]) == [x + b[0] for x in a]  # broadcast of a length-1 vector


def test_indexing_and_concat(keys, rng):
    pk, sk = keys
    a = [int(v) for v in rng.integers(-100, 100, size=12)]
    cv = sk.encrypt_ints(a)
    dec = sk.decrypt_signed
    assert dec(cv[3]) == [a[3]]
    assert dec(cv[-1]) == [a[-1]]
    assert dec(cv[2:7]) == a[2:7]
    idx = np.array([5, 0, 5, 11])
    assert dec(cv[idx]) == [a[i] for i in idx]
    assert dec(cv[np.arange(12) % 2 == 0]) == a[::2]
    assert dec(cv.concat(cv[:2])) == a + a[:2]
    assert dec(concat([cv[:1], cv[1:]])) == a
    with pytest.raises(IndexError, match="out of range"):
        cv[12]


@pytest.mark.parametrize("n_groups", [1, 4, 9])
def test_group_sum_matches_bincount(keys, rng, n_groups):
    pk, sk = keys
    vals = rng.integers(-(10**9), 10**9, size=60)
    gid = rng.integers(0, n_groups, size=60)
    if n_groups == 9:
        gid[gid == 3] = 4  # one empty group
    cv = sk.encrypt_ints(vals)
    got = cv.group_sum(gid, n_groups)
    expect = [int(vals[gid == g].sum()) for g in range(n_groups)]
    assert sk.decrypt_signed(got) == expect
    if n_groups == 9:
        assert got.ciphertexts()[3] == 1  # empty group: E(0) without randomness


def test_group_sum_rejects_bad_ids(keys):
    pk, sk = keys
    cv = sk.encrypt_ints([1, 2, 3])
    with pytest.raises(ConfigError, match=r"in \[0, 2\)"):
        cv.group_sum(np.array([0, 1, 2]), 2)
    with pytest.raises(ConfigError, match="length"):
        cv.group_sum(np.array([0, 1]), 2)


@pytest.mark.parametrize("parallel", [False, True])
def test_histogram_matches_numpy(keys, rng, parallel):
    pk, sk = keys
    rows, feats, n_bins = 40, 3, 5
    vals = rng.integers(0, 10**6, size=rows)
    bins = rng.integers(0, n_bins, size=(rows, feats))
    hist = sk.encrypt_ints(vals).histogram(bins, n_bins, parallel=parallel)
    expect = [int(vals[bins[:, j] == b].sum()) for j in range(feats) for b in range(n_bins)]
    assert sk.decrypt_ints(hist) == expect


def test_pool_paths_match_serial(keys, rng):
    pk, sk = keys
    vals = [int(v) for v in rng.integers(-(10**6), 10**6, size=8)]
    cv = sk.encrypt_ints(vals, parallel=True)
    assert sk.decrypt_signed(cv, parallel=True) == vals
    assert sk.decrypt_signed(pk.encrypt_ints(vals, parallel=True)) == vals
    assert sk.decrypt_signed(cv.obfuscate(parallel=True)) == vals
    assert sk.decrypt_signed(sk.obfuscate(cv, parallel=True)) == vals


# ------------------------------------------------------------------ fixed point
@pytest.mark.parametrize("frac_bits", [0, 16, 32, 53])
def test_fixed_point_round_trip(frac_bits, rng):
    fp = FixedPoint(frac_bits=frac_bits)
    x = np.concatenate([rng.normal(size=50) * 1e3, [0.0, -0.0, 1e15, -1e15, 2.0**-frac_bits]])
    back = fp.decode(fp.encode(x))
    np.testing.assert_allclose(back, x, atol=2.0 ** -(frac_bits + 1), rtol=2**-52)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fixed_point_rejects_non_finite(bad):
    with pytest.raises(DataError, match="NaN or infinite"):
        FixedPoint().encode([1.0, bad])


@pytest.mark.parametrize("owner", [True, False])
def test_float_vectors(keys, rng, owner):
    pk, sk = keys
    x = np.concatenate([rng.uniform(-5, 5, size=20), [0.0, 1e9, -1e9]])
    y = rng.uniform(-5, 5, size=23)
    enc = sk.encrypt if owner else pk.encrypt
    cx = enc(x)
    tol = 2.0**-30
    np.testing.assert_allclose(sk.decrypt(cx), x, atol=tol)
    np.testing.assert_allclose(sk.decrypt(cx + pk.encrypt(y)), x + y, atol=tol)
    np.testing.assert_allclose(sk.decrypt(cx.add_plain(y)), x + y, atol=tol)
    prod = cx.mul_plain(y)
    assert prod.frac_bits == 64
    np.testing.assert_allclose(sk.decrypt(prod), x * y, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(sk.decrypt(cx.sum()), [x.sum()], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(sk.decrypt(cx.dot(y)), [x @ y], rtol=1e-9, atol=1e-6)
    # mixed scales align up
    mixed = pk.encrypt(y, frac_bits=16) + cx
    assert mixed.frac_bits == 32
    np.testing.assert_allclose(sk.decrypt(mixed), x + np.round(y * 2**16) / 2**16, atol=tol)


# ------------------------------------------------------------------ phe interop
def test_ours_decrypt_with_phe_and_back(keys, rng):
    pk, sk = keys
    vals = [int(v) for v in rng.integers(-(10**9), 10**9, size=10)]
    phe_pk, phe_sk = pk.to_phe(), sk.to_phe()
    ours = sk.encrypt_ints(vals).to_phe() + pk.encrypt_ints(vals).to_phe()
    assert [phe_sk.decrypt(e) for e in ours] == vals + vals
    theirs = [phe_pk.encrypt(v) for v in vals]
    for e in theirs:
        e.decrease_exponent_to(0)
    cv = CipherVector.from_phe(pk, theirs)
    assert sk.decrypt_signed(cv) == vals
    assert sk.decrypt_signed(cv + sk.encrypt_ints(vals)) == [2 * v for v in vals]


# ------------------------------------------------------------------ blobs
def test_blob_round_trip_through_serde(keys, rng):
    pk, sk = keys
    x = rng.normal(size=9)
    cv = pk.encrypt(x, frac_bits=20)
    blob = serde.decode(serde.encode({"v": cv}))["v"]
    assert isinstance(blob, CipherBlob)
    assert blob.width == pk.width and blob.count == 9 and len(blob.data) == 9 * pk.width
    back = PublicKey.from_wire(pk.to_wire()).vector_from_blob(blob)
    assert back.frac_bits == 20
    np.testing.assert_allclose(sk.decrypt(back), x, atol=2.0**-20)
    assert back.ciphertexts() == cv.ciphertexts()  # fresh vectors are sent as they are


def test_derived_vectors_are_rerandomized_before_export(keys):
    pk, sk = keys
    cv = pk.encrypt_ints([1, 2, 3])
    s = cv + cv
    assert not s.is_fresh
    back = pk.vector_from_blob(s.to_blob())
    assert back.ciphertexts() != s.ciphertexts()
    assert sk.decrypt_ints(back) == [2, 4, 6]


def test_blob_from_other_key_rejected(keys, other_keys):
    pk, sk = keys
    blob = other_keys[0].encrypt_ints([1, 2]).to_blob()
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        pk.vector_from_blob(blob)


@pytest.mark.parametrize("tamper", ["zero", "too_big", "not_coprime", "truncated", "scheme", "width"])
def test_tampered_blob_rejected_opaquely(keys, tamper):
    pk, sk = keys
    blob = pk.encrypt_ints([1, 2]).to_blob()
    w = pk.width
    data = blob.data
    if tamper == "zero":
        data = bytes(w) + data[w:]
    elif tamper == "too_big":
        data = b"\xff" * w + data[w:]
    elif tamper == "not_coprime":
        data = int(pk.n).to_bytes(w, "big") + data[w:]
    elif tamper == "truncated":
        data = data[:-1]
    kw = {"data": data}
    if tamper == "scheme":
        kw = {"scheme": "ckks"}
    if tamper == "width":
        kw = {"width": w + 1}
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        pk.vector_from_blob(dataclasses.replace(blob, **kw))


def test_decrypt_under_wrong_key_is_opaque(keys, other_keys):
    pk, sk = keys
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        sk.decrypt_ints(other_keys[0].encrypt_ints([1]))


def test_mixing_keys_refused(keys, other_keys):
    a = keys[0].encrypt_ints([1])
    b = other_keys[0].encrypt_ints([1])
    with pytest.raises(ConfigError, match="different public keys"):
        a + b


# ------------------------------------------------------------------ compression (SecureBoost's packing)
@pytest.mark.parametrize("count", [1, 5, 13])
def test_compress_round_trip_with_secureboost_codec(keys, rng, count):
    """Signed packed (G, H) sums, compressed and decrypted, unpack to the exact integer sums."""
    pk, sk = keys
    codec = GHCodec(max_rows=1000, plaintext_bits=pk.bits - 1)
    g = rng.integers(-(2**GH_BITS), 2**GH_BITS + 1, size=(count, 50))
    h = rng.integers(0, 2 ** (GH_BITS - 2) + 1, size=(count, 50))
    g[0, :3] = [-(2**GH_BITS), 2**GH_BITS, 0]
    sums = concat([sk.encrypt_ints(codec.pack(np.stack([g[i], h[i]], axis=1))).sum() for i in range(count)])
    comp = compress(sums, item_bits=codec.item_bits)
    assert len(comp) == -(-count // codec.per_ciphertext)
    got = codec.unpack(sk.decrypt_signed(comp), count)
    np.testing.assert_array_equal(got, np.stack([g.sum(axis=1), h.sum(axis=1)], axis=1))


def test_secureboost_codec_refuses_overflowed_compression(keys):
    pk, sk = keys
    codec = GHCodec(max_rows=1000, plaintext_bits=pk.bits - 1)
    with pytest.raises(ProtocolError, match="extra data"):
        codec.unpack([1 << (codec.item_bits * 2)], 2)
    with pytest.raises(ProtocolError, match="wrong number"):
        codec.unpack([1, 2], 1)


def test_compress_refuses_bad_item_bits(keys):
    pk, _ = keys
    with pytest.raises(ConfigError, match="item_bits"):
        compress(pk.encrypt_ints([1]), item_bits=0)
    with pytest.raises(ConfigError, match="does not fit"):
        compress(pk.encrypt_ints([1]), item_bits=pk.bits)


# ------------------------------------------------------------------ raw helpers
@pytest.mark.parametrize("window", [1, 4, 10])
def test_fixed_base_matches_powmod(window, rng):
    import gmpy2

    m = gmpy2.next_prime(2**300) * gmpy2.next_prime(2**301)
    fb = FixedBase(12345, m, 100, window)
    for e in [0, 1, 2**100 - 1, int(rng.integers(0, 2**62)) * 2**37]:
        assert fb.pow(e) == pow(12345, e, int(m))


@pytest.mark.parametrize("bits,expect", [(1024, 256), (2048, 256), (3072, 256), (7680, 384)])
def test_short_exponent_is_at_least_twice_security(bits, expect):
    assert short_exponent_bits(bits) == expect
