"""OU fast paths (issue #17 speed targets): the key owner's short-exponent encryption and the
histogram kernels (our grouped gmpy2 kernel; HEU only when asked for)."""

from __future__ import annotations

import secrets as _secrets
import sys

import gmpy2
import numpy as np
import pytest

from fedcredit.crypto import _ou_heu, _ou_raw, ou, pool
from fedcredit.crypto._raw import security_bits
from fedcredit.errors import ConfigError
from fedcredit.testing import small_ou_keypair


@pytest.fixture(scope="module")
def keys():
    return small_ou_keypair(768, cached=False)


class _Recorder:
    """Stands in for the ``secrets`` module inside ``_ou_raw``: records each ``randbits`` length and value."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def randbits(self, k: int) -> int:
        v = _secrets.randbits(k)
        self.calls.append((k, v))
        return v

    def randbelow(self, n: int) -> int:
        return _secrets.randbelow(n)


# ---------------------------------------------------------------- short exponent (key owner)
@pytest.mark.parametrize("bits", [768, 2048, 3072, 7680])
def test_owner_exponent_length_is_at_least_twice_the_security_level(bits):
    from fedcredit.crypto.ou.keys import _p_bits
    from fedcredit.crypto._raw import short_exponent_bits

    # the attribute is derived from |n| only; check the rule behind it for every size class
    assert short_exponent_bits(bits) >= max(256, 2 * security_bits(bits))
    assert short_exponent_bits(bits) < bits - _p_bits(bits)  # really shorter than the textbook |p| + |q| + 128


def test_owner_encryption_is_g_m_h_r_with_a_short_r_of_the_declared_length(keys, monkeypatch):
    pk, sk = keys
    assert pk.owner_r_bits == 256 and pk.r_bits > 256
    rec = _Recorder()
    monkeypatch.setattr(_ou_raw, "secrets", rec)
    sk._engine = None  # a fresh engine under the recorder
    ms = [0, 1, -5, 2**150, -(2**170)]
    cv = sk.encrypt_ints(ms, parallel=False)
    assert [k for k, _ in rec.calls] == [pk.owner_r_bits] * len(ms)
    n = pk.n
    for m, c, (_, r) in zip(ms, cv.ciphertexts(), rec.calls):
        assert int(c) == pow(pk.g, m, n) * pow(pk.h, r, n) % n  # CRT gives exactly the textbook formula
    monkeypatch.undo()
    assert sk.decrypt_signed(cv) == ms


def test_public_encryption_keeps_the_full_length_r(keys, monkeypatch):
    pk, _ = keys
    rec = _Recorder()
    monkeypatch.setattr(_ou_raw, "secrets", rec)
    pk._engine = None
    pk.encrypt_ints([1, 2, 3])
    assert [k for k, _ in rec.calls] == [pk.r_bits] * 3
    pk._engine = None


def test_owner_obfuscate_uses_the_short_exponent_and_keeps_plaintexts(keys, monkeypatch):
    pk, sk = keys
    cv = sk.encrypt_ints([7, -8])
    rec = _Recorder()
    monkeypatch.setattr(_ou_raw, "secrets", rec)
    sk._engine = None
    out = sk.obfuscate(cv)
    assert [k for k, _ in rec.calls] == [pk.owner_r_bits] * 2
    assert out.ciphertexts() != cv.ciphertexts()
    monkeypatch.undo()
    assert sk.decrypt_signed(out) == [7, -8]


def _bsgs_confirms(pk, c: int, m_guess: int, r_bits: int) -> bool:
    """Whether ``c = g^m_guess h^r`` for some ``r < 2^r_bits`` (baby-step giant-step, ``2^(r_bits/2)`` steps)."""
    n = pk.n
    target = c * pow(pow(pk.g, m_guess, n), -1, n) % n
    half = (r_bits + 1) // 2
    baby = {}
    x = 1
    for j in range(1 << half):
        baby.setdefault(x, j)
        x = x * pk.h % n
    giant = pow(pow(pk.h, 1 << half, n), -1, n)
    y = target
    for _ in range(1 << (r_bits - half)):
        if y in baby:
            return True
        y = y * giant % n
    return False


def test_why_the_exponent_must_be_long_a_short_r_lets_anyone_test_a_guessed_plaintext(keys):
    """The attack the length defends against: with an ``l``-bit ``r``, anyone holding only the public key
    confirms or rejects a guessed plaintext in ``2^(l/2)`` steps (HEU's 110-bit ``r``: 2^55). At
    ``l = 20`` it succeeds here; the key owner's declared ``l >= 256`` puts it at 2^128."""
    pk, sk = keys
    eng = _ou_raw.OwnerEngine(sk._p, sk._q, pk.g, pk.h, pk.plaintext_bits, 20)
    (c,) = eng.encrypt([42])
    assert _bsgs_confirms(pk, int(c), 42, 20)
    assert not _bsgs_confirms(pk, int(c), 43, 20)
    assert pk.owner_r_bits >= 256  # the same search: 2^128 steps


def test_pool_owner_encryption_uses_the_short_exponent(keys):
    pk, sk = keys
    ms = list(range(-20, 20))
    cv = sk.encrypt_ints(ms, parallel=True)
    assert sk.decrypt_signed(cv) == ms
    eng = pool._ou_owner_engine(*(int(v).to_bytes(pk.width, "big") for v in (sk._p, sk._q, pk.g, pk.h)),
                                pk.plaintext_bits, pk.owner_r_bits)
    assert eng.r_bits == pk.owner_r_bits


# ---------------------------------------------------------------- histogram kernel "auto"
def _data(pk, sk, rows=120, feats=4, n_bins=6, seed=5):
    rng = np.random.default_rng(seed)
    g = rng.integers(-(2**30), 2**30, size=rows)
    bins = rng.integers(0, n_bins, size=(rows, feats)).astype(np.uint8)
    return sk.encrypt_ints(g), g, bins, n_bins


@pytest.mark.parametrize("parallel", [False, True])
def test_auto_kernel_equals_gmpy2_and_the_plaintext_sums(keys, parallel):
    pk, sk = keys
    cv, g, bins, nb = _data(pk, sk)
    ref = cv.histogram(bins, nb, kernel="gmpy2", parallel=False)
    auto = cv.histogram(bins, nb, kernel="auto", parallel=parallel)
    assert auto.ciphertexts() == ref.ciphertexts()
    want = [int(g[bins[:, j] == b].sum()) for j in range(bins.shape[1]) for b in range(nb)]
    assert sk.decrypt_signed(auto) == want


def test_auto_kernel_never_reaches_heu(keys, monkeypatch):
    """``"auto"`` is our grouped kernel (measured faster than HEU): HEU is never consulted."""
    pk, sk = keys
    cv, _, bins, nb = _data(pk, sk, seed=9)
    monkeypatch.setattr(_ou_heu, "bridge_for", lambda *a: pytest.fail("auto consulted HEU"))
    ref = cv.histogram(bins, nb, kernel="gmpy2", parallel=False).ciphertexts()
    assert cv.histogram(bins, nb, kernel="auto", parallel=False).ciphertexts() == ref
    # the pool worker's path, run in this process
    w = pk.width
    data = b"".join(int(c).to_bytes(w, "big") for c in cv.ciphertexts())
    out = pool.w_ou_histogram(pk._bytes[0], data, w, bins, nb)
    assert [int.from_bytes(out[i:i + w], "big") for i in range(0, len(out), w)] == [int(c) for c in ref]


@pytest.mark.parametrize("how", ["missing", "broken", "wrong-size"])
def test_heu_kernel_refuses_when_heu_is_missing_or_broken(keys, monkeypatch, how):
    pk, sk = keys
    cv, _, bins, nb = _data(pk, sk, seed=9)

    class Broken:
        def bucket_sums(self, cs, b, k):
            if how == "broken":
                raise RuntimeError("format changed")
            return [gmpy2.mpz(1)] * 3

    monkeypatch.setattr(_ou_heu, "bridge_for", lambda *a: None if how == "missing" else Broken())
    with pytest.raises(ConfigError):  # an explicit kernel="heu" never switches silently
        cv.histogram(bins, nb, kernel="heu")


def test_heu_kernel_equals_gmpy2_when_its_bridge_passes(keys):
    pk, sk = keys
    cv, _, bins, nb = _data(pk, sk, seed=11)
    if sys.version_info >= (3, 12):
        pytest.skip("sf-heu has no wheels for CPython 3.12 (the [heu] extra is 3.10-3.11)")
    assert _ou_heu.bridge_for(pk.n, pk.g, pk.h, pk.plaintext_bits) is not None, "sf-heu is a dev dependency"
    got = cv.histogram(bins, nb, kernel="heu", parallel=False).ciphertexts()
    assert got == cv.histogram(bins, nb, kernel="gmpy2", parallel=False).ciphertexts()


def test_unknown_kernel_still_refused(keys):
    pk, sk = keys
    with pytest.raises(ConfigError):
        sk.encrypt_ints([1]).histogram(np.zeros((1, 1), dtype=np.uint8), 2, kernel="fast")


# ---------------------------------------------------------------- threaded decryption
def test_threaded_decryption_equals_serial_and_the_guard_still_refuses(keys):
    pk, sk = keys
    ms = list(range(-40, 40))
    cv = sk.encrypt_ints(ms)
    assert sk.decrypt_signed(cv, parallel=True) == sk.decrypt_signed(cv, parallel=False) == ms
    # a crafted plaintext >= p among valid ones: nothing is released on either path
    crafted = pk.vector_from_raw([int(gmpy2.powmod(pk.g, sk._p + sk._p // 3, pk.n))] + [int(c) for c in cv.ciphertexts()])
    from fedcredit.errors import DecryptionError

    for par in (True, False):
        with pytest.raises(DecryptionError):
            sk.decrypt_signed(crafted, parallel=par)
        with pytest.raises(DecryptionError):
            sk.decrypt_ints(crafted, parallel=par)
