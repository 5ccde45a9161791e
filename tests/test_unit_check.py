"""The batched unit check (crypto/blob.check_units): one gcd of the product refuses exactly what a gcd per
ciphertext refused, wherever the bad value sits in a long vector, for both schemes and every entry point."""

from __future__ import annotations

from dataclasses import replace

import pytest
from gmpy2 import mpz

from fedcredit.crypto.blob import check_units
from fedcredit.errors import DecryptionError
from fedcredit.testing import small_keypair, small_ou_keypair


def _pair(scheme):
    return small_keypair(768) if scheme == "paillier" else small_ou_keypair(768)


def _factors(scheme, sk):
    return sk._p, sk._q


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
@pytest.mark.parametrize("where", [0, 137, 299])
@pytest.mark.parametrize("factor", ["p", "q", "pq"])
def test_one_non_unit_anywhere_is_refused(scheme, where, factor):
    pk, sk = _pair(scheme)
    p, q = (int(x) for x in _factors(scheme, sk))
    blob = sk.encrypt_ints(list(range(300))).to_blob()
    w = blob.width
    bad = {"p": p * 7919, "q": q * 104729, "pq": p * q}[factor]
    data = blob.data[: where * w] + bad.to_bytes(w, "big") + blob.data[(where + 1) * w:]
    with pytest.raises(DecryptionError):
        pk.vector_from_blob(replace(blob, data=data))
    assert len(pk.vector_from_blob(blob)) == 300  # the untouched vector still passes


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
def test_decryption_refuses_a_non_unit_in_a_vector(scheme):
    pk, sk = _pair(scheme)
    p = int(_factors(scheme, sk)[0])
    cs = [int(c) for c in sk.encrypt_ints([1, 2, 3]).ciphertexts()]
    bad = pk.vector_from_raw(cs + [p * 3])
    with pytest.raises(DecryptionError):
        sk.decrypt_signed(bad)


def test_check_units_matches_a_gcd_per_value():
    n = mpz(101 * 103 * 107)
    good = [mpz(x) for x in range(1, 2000) if x % 101 and x % 103 and x % 107]
    check_units(good, n, n)
    for bad in (mpz(101), mpz(103 * 5), mpz(0), n, n + 1):
        with pytest.raises(DecryptionError):
            check_units(good[:500] + [bad] + good[500:], n, n)
