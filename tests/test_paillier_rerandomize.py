"""Issue 23 item 5: a re-randomized sum must not show the key owner which rows went into it.

The attack: the key owner (knowing ``p, q``) encrypts every row with randomness whose
Legendre symbols mod ``p`` and ``q`` are +1, except one *marked* row; a host sums a secret
subset and re-randomizes.  The owner reads the Legendre symbol ``(c / p) = (r / p)`` of the
returned ciphertext.  With a fixed-base obfuscator ``h^a`` (``h = r0^n``) one of the two
symbols is constant on ``h^a`` (``Z_n^*`` is never cyclic; here exactly one, because
``(r0 / n) = -1``), the owner learns which from a few calibration sums, and then the symbol
of a sum shows whether the marked row is in it -- every time.  With uniform ``r^n`` the
symbol is a fair coin.
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz, powmod

from fedcredit.crypto import CipherBlob
from fedcredit.crypto import parallel as cparallel
from fedcredit.crypto import pool as cpool
from fedcredit.crypto._raw import bytes_to_ints, ints_to_bytes
from fedcredit.crypto.paillier import PublicKey
from fedcredit.testing import small_keypair

N_ROWS = 16
N_CAL = 12
N_TRIALS = 80


@pytest.fixture(scope="module")
def keys():
    return small_keypair(512)


def _unit_with(p, q, n, sp, sq):
    """A random unit mod n with Legendre symbols (r/p) = sp and (r/q) = sq."""
    while True:
        r = mpz(secrets.randbelow(n - 2) + 2)
        if gmpy2.legendre(r, p) == sp and gmpy2.legendre(r, q) == sq:
            return r


def _owner_rows(sk, marked_char):
    """Owner's encryptions of 1..N_ROWS: row 0 is marked (symbol -1 for the character
    ``marked_char`` = 'p' or 'q'), all others have symbols +1 mod p and mod q."""
    pk = sk.public_key
    n, p, q = mpz(pk.n), mpz(sk._p), mpz(sk._q)
    nsq = n * n
    out = []
    for i in range(N_ROWS):
        if i == 0:
            r = _unit_with(p, q, pk.n, -1, 1) if marked_char == "p" else _unit_with(p, q, pk.n, 1, -1)
        else:
            r = _unit_with(p, q, pk.n, 1, 1)
        out.append((1 + (i + 1) * n) * powmod(r, n, nsq) % nsq)
    return out


def _blob(pk, cs):
    return CipherBlob(scheme="paillier", key_fingerprint=pk.fingerprint, width=pk.width, count=len(cs),
                      data=ints_to_bytes(cs, pk.width), meta={"frac_bits": 0})


def _symbols(sk, c):
    return gmpy2.legendre(mpz(c), mpz(sk._p)), gmpy2.legendre(mpz(c), mpz(sk._q))


def _attack(sk, host_pk, rerandomize, seed):
    """Fraction of trials in which the owner correctly tells whether the marked row was summed."""
    rng = np.random.default_rng(seed)
    pk = sk.public_key
    # calibration: sums of unmarked rows only; the character constant (+1) on the host's obfuscators
    cal = host_pk.vector_from_blob(_blob(pk, _owner_rows(sk, "p")))
    sym = np.array([_symbols(sk, rerandomize(cal[1:].sum()))[0:2] for _ in range(N_CAL)])
    char = "p" if np.all(sym[:, 0] == 1) else "q"
    rows = host_pk.vector_from_blob(_blob(pk, _owner_rows(sk, char)))  # what the host receives
    right = 0
    for _ in range(N_TRIALS):
        present = bool(rng.integers(2))
        subset = rng.choice(np.arange(1, N_ROWS), size=6, replace=False)
        if present:
            subset = np.r_[0, subset]
        c = rerandomize(rows[np.sort(subset)].sum())  # the host's secret subset sum, re-randomized
        assert sk.decrypt_ints(pk.vector_from_blob(_blob(pk, [c])))[0] == int(np.sum(subset + 1))
        sp, sq = _symbols(sk, c)
        guess = (sp if char == "p" else sq) == -1
        right += guess == present
    return right / N_TRIALS


def _via_blob(v):
    """The public API: to_blob re-randomizes a derived vector (uniform r^n)."""
    blob = v.to_blob()
    return bytes_to_ints(blob.data, blob.width)[0]


def _fixed_base(v):
    """The old behaviour, still used only for recipients that are not the key owner."""
    return v.obfuscate(for_key_owner=False).ciphertexts()[0]


def _pool_worker(v):
    """The pool / Dask worker function, run in-process."""
    pk = v.public_key
    out = cpool.w_public_obfuscate(pk.to_wire()["n"], ints_to_bytes(v.ciphertexts(), pk.width), pk.width)
    return bytes_to_ints(out, pk.width)[0]


@pytest.mark.parametrize("engine", range(3))
def test_fixed_base_rerandomization_reveals_marked_row(keys, engine):
    """Shows the attack working against the fixed-base obfuscator (the behaviour before the fix)."""
    _, sk = keys
    host_pk = PublicKey(sk.public_key.n)  # a host process: its own engine and r0
    assert _attack(sk, host_pk, _fixed_base, seed=engine) == 1.0


@pytest.mark.parametrize("rerandomize", [_via_blob, _pool_worker], ids=["to_blob", "pool_worker"])
def test_uniform_rerandomization_hides_marked_row(keys, rerandomize):
    _, sk = keys
    host_pk = PublicKey(sk.public_key.n)
    acc = _attack(sk, host_pk, rerandomize, seed=7)
    # chance is 0.5; 80 trials: sd 0.056, so [0.3, 0.7] is a 3.6-sd band
    assert 0.3 <= acc <= 0.7


def test_fixed_base_jacobi_symbol_is_a_fair_coin(keys):
    """The one character anyone can compute (Jacobi mod n) is (-1)^a per fixed-base ciphertext."""
    pk, _ = keys
    host_pk = PublicKey(pk.n)
    cs = host_pk.encrypt_ints([0] * 400).ciphertexts()
    share = np.mean([gmpy2.jacobi(mpz(c), mpz(pk.n)) == 1 for c in cs])
    assert 0.4 <= share <= 0.6


def test_to_blob_of_fresh_vector_is_unchanged_and_derived_is_uniform(keys):
    pk, sk = keys
    fresh = pk.encrypt_ints([1, 2, 3])
    assert bytes_to_ints(fresh.to_blob().data, pk.width) == fresh.ciphertexts()
    derived = fresh + fresh
    back = pk.vector_from_blob(derived.to_blob())
    assert back.ciphertexts() != derived.ciphertexts() and sk.decrypt_ints(back) == [2, 4, 6]


def test_precomputed_uniform_obfuscators_are_used_once(keys):
    """Re-randomization takes uniform obfuscators computed ahead of use first, each exactly once."""
    from fedcredit.crypto._raw import uniform_obfuscators

    pk, sk = keys
    host_pk = PublicKey(pk.n)
    derived = host_pk.encrypt_ints([1, 2, 3, 4, 5]) + host_pk.encrypt_ints([0] * 5)
    ready = uniform_obfuscators(pk.n, 3)
    host_pk._uniform._ready.extend(ready)
    out = derived.obfuscate()
    assert host_pk._uniform.available() == 0
    nsq = mpz(pk.nsquare)
    assert out.ciphertexts()[:3] == [int(c * r % nsq) for c, r in zip(derived.raw_ints()[:3], ready)]
    assert sk.decrypt_ints(out) == [1, 2, 3, 4, 5]


def test_refill_runs_in_the_pool_for_production_keys(monkeypatch):
    """After a re-randomization, the next batch's uniform obfuscators are computed in the background."""
    from fedcredit.crypto.paillier import generate_keypair

    pk, sk = generate_keypair(2048)
    monkeypatch.setattr(cparallel, "pool_size", lambda: 2)
    derived = pk.encrypt_ints([7] * 4, parallel=False) + pk.encrypt_ints([1] * 4, parallel=False)
    derived.obfuscate(parallel=False)  # parallel=False: no background work either
    assert pk._uniform._pending == []
    first = derived.obfuscate()
    assert pk._uniform._pending != []
    pk._uniform.wait(timeout=120)
    assert pk._uniform.available() == 4
    second = derived.obfuscate()  # takes the 4 precomputed ones, starts the next refill
    assert sk.decrypt_ints(first) == sk.decrypt_ints(second) == [8] * 4
    assert first.ciphertexts() != second.ciphertexts()
    pk._uniform.wait(timeout=120)


def test_no_refill_on_an_executor_without_an_idle_pool(monkeypatch):
    """A backend without an idle pool (Dask) gets no background work; re-randomization computes what it needs."""
    from fedcredit import compute
    from fedcredit.compute.local import LocalBackend
    from fedcredit.crypto.paillier import generate_keypair

    class NoIdle(LocalBackend):
        name = "no-idle"

        def submit_idle(self, fn, *args):
            return None

    pk, sk = generate_keypair(2048)
    monkeypatch.setattr(cparallel, "pool_size", lambda: 2)
    derived = pk.encrypt_ints([7] * 3, parallel=False) + pk.encrypt_ints([1] * 3, parallel=False)
    with compute.using(NoIdle()):
        out = derived.obfuscate()
    assert pk._uniform._pending == [] and pk._uniform.available() == 0 and sk.decrypt_ints(out) == [8] * 3
