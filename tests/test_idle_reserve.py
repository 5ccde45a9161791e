"""The key owner's OU encryption randomness computed ahead in the idle pool (crypto/_reserve.IdleReserve,
ou.PrivateKey.encrypt_ints): the same ciphertext formula, every value used once, nothing inherited by a fork,
and the next call really finds its randomness ready."""

from __future__ import annotations

import os
from concurrent.futures import Future

import gmpy2
import pytest

from fedcredit.crypto import _ou_raw, ou
from fedcredit.crypto import parallel as _par
from fedcredit.crypto._reserve import IdleReserve
from fedcredit.testing import small_ou_keypair


def _done(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def _failed() -> Future:
    f: Future = Future()
    f.set_exception(RuntimeError("worker died"))
    return f


def _counting_task(width):
    state = {"next": 1}

    def task(count):
        lo = state["next"]
        state["next"] += count
        return (lambda: None), (b"".join(v.to_bytes(width, "big") for v in range(lo, lo + count)),)

    return task


def test_values_are_handed_out_once_in_chunks_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(_par, "submit_idle", lambda fn, data: _done(data))
    r = IdleReserve(_counting_task(4), 4, cap=100, chunk=16)
    assert r.take(5) == []  # nothing computed yet: the caller draws fresh values
    r.refill(40)
    assert r.available() == 40
    first, second = r.take(25), r.take(25)
    assert len(first) == 25 and len(second) == 15
    assert not set(first) & set(second) and len(set(first + second)) == 40
    r.refill(40)  # the last counts' sum: 80 wanted, none ready
    assert r.available() == 80
    r.refill(40)  # 120 wanted, never more than the cap ready or in flight
    assert r.available() == 100
    r.take(100)
    r.refill(1)  # the last three counts: 40 + 40 + 1
    assert r.available() == 81


def test_a_failed_or_missing_idle_pool_only_means_fresh_values(monkeypatch):
    monkeypatch.setattr(_par, "submit_idle", lambda fn, data: _failed())
    r = IdleReserve(_counting_task(4), 4, cap=100, chunk=16)
    r.refill(20)
    assert r.take(20) == []
    monkeypatch.setattr(_par, "submit_idle", lambda fn, data: None)  # a distributed backend: no idle pool
    r.refill(20)
    assert r.take(20) == [] and r._pending == []


def test_a_forked_child_drops_its_parents_reserve(monkeypatch):
    monkeypatch.setattr(_par, "submit_idle", lambda fn, data: _done(data))
    r = IdleReserve(_counting_task(4), 4, cap=100, chunk=16)
    r.refill(30)
    assert r.available() == 30
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a child
    assert r.take(30) == []


def test_owner_encryption_with_ready_randomness_is_g_m_h_r():
    pk, sk = small_ou_keypair(768)
    eng = _ou_raw.OwnerEngine(sk._p, sk._q, pk.g, pk.h, pk.plaintext_bits, pk.owner_r_bits)
    hs = eng.randomizers(3)
    ms = [5, -7, 2**100, 9]
    cs = eng.encrypt(ms, hs)
    n = pk.n
    for m, c, h in zip(ms[:3], cs, hs):
        assert int(c) == pow(pk.g, m, n) * int(h) % n
    cv = pk.vector_from_raw(cs)
    assert sk.decrypt_signed(cv) == ms


def test_the_second_call_uses_randomness_computed_in_the_idle_pool_once_each():
    """A 2048-bit key with the local pool: the real path a SecureBoost guest takes between trees."""
    if _par.pool_size() < 2:
        pytest.fail("the local pool needs 2 workers for this test (CI has 2 cores)")
    pk, sk = ou.generate_keypair(2048)
    ms = list(range(-300, 300))
    first = sk.encrypt_ints(ms)
    sk._randomizers.wait(timeout=120)
    ready = sk._randomizers.available()
    assert ready == len(ms)
    second = sk.encrypt_ints(ms)
    assert sk._randomizers.available() == 0  # taken, not copied
    assert sk.decrypt_signed(second) == ms and sk.decrypt_signed(first) == ms
    # the randomness of every ciphertext of both calls, c * g^-m: all distinct (no value used twice)
    n = pk.n
    hr = {int(c) * int(gmpy2.invert(gmpy2.powmod(pk.g, m, n), n)) % n
          for cv in (first, second) for m, c in zip(ms, cv.ciphertexts())}
    assert len(hr) == 2 * len(ms)
