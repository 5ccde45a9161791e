"""Worker functions of vector crypto, and :class:`KeyBytes`.

They run on the party's executor (:mod:`fedcredit.crypto.parallel`): the process pool of
:class:`fedcredit.compute.LocalBackend` by default, or a Dask cluster of the party's own
(``[compute] backend = "dask"``, see ``docs/compute.md``). The pool's lifecycle lives in
:mod:`fedcredit.compute.local`; nothing here starts or stops processes.

Workers receive the key material they need (``n``, or ``p`` and ``q`` for the
key owner) as bytes, only within the party's own pool or cluster; private key
bytes are :class:`KeyBytes`, whose ``repr`` never shows them (a distributed
engine logs the ``repr`` of a failed task). Workers rebuild and cache their
engines (fixed-base tables) per key fingerprint and never log or return key
material.  Ciphertexts travel as fixed-width big-endian bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["KeyBytes", "w_owner_encrypt", "w_owner_decrypt", "w_owner_obfuscate", "w_public_encrypt",
           "w_public_obfuscate", "w_public_obfuscate_fixed", "w_uniform_obfuscators", "w_histogram",
           "w_ou_owner_encrypt", "w_ou_owner_randomizers", "w_ou_histogram"]


class KeyBytes(bytes):
    """Private key material as bytes whose ``repr``/``str`` hide the value.

    Worker functions use it like ``bytes``; it pickles as itself, so a task
    description that a compute engine logs (Dask logs ``repr`` of a failed
    task's arguments) shows ``<key material>`` instead of the primes.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<key material>"

    __str__ = __repr__

    def __reduce__(self):
        return (KeyBytes, (bytes(self),))


# ---------------------------------------------------------------- worker side
_engines: dict = {}


def _owner_engine(p_bytes: bytes, q_bytes: bytes):
    from ._raw import OwnerEngine

    key = ("owner", hashlib.sha256(p_bytes + b"|" + q_bytes).digest())
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = OwnerEngine(int.from_bytes(p_bytes, "big"), int.from_bytes(q_bytes, "big"))
    return eng


def _public_engine(n_bytes: bytes):
    from ._raw import PublicEngine

    key = ("public", hashlib.sha256(n_bytes).digest())
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = PublicEngine(int.from_bytes(n_bytes, "big"))
    return eng


def w_owner_encrypt(p_bytes: bytes, q_bytes: bytes, ms: list, width: int) -> bytes:
    from ._raw import ints_to_bytes

    eng = _owner_engine(p_bytes, q_bytes)
    return ints_to_bytes(eng.encrypt(ms), width)


def w_owner_decrypt(p_bytes: bytes, q_bytes: bytes, data: bytes, width: int) -> list:
    from ._raw import bytes_to_ints

    eng = _owner_engine(p_bytes, q_bytes)
    return [int(m) for m in eng.decrypt(bytes_to_ints(data, width))]


def w_owner_obfuscate(p_bytes: bytes, q_bytes: bytes, data: bytes, width: int) -> bytes:
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _owner_engine(p_bytes, q_bytes)
    return ints_to_bytes(eng.obfuscate(bytes_to_ints(data, width)), width)


def w_public_encrypt(n_bytes: bytes, ms: list, width: int) -> bytes:
    from ._raw import ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.encrypt(ms), width)


def w_public_obfuscate(n_bytes: bytes, data: bytes, width: int) -> bytes:
    """Re-randomize with uniform ``r^n`` (results that may reach the key owner)."""
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.obfuscate(bytes_to_ints(data, width)), width)


def w_public_obfuscate_fixed(n_bytes: bytes, data: bytes, width: int) -> bytes:
    """Re-randomize with this worker's fixed base (results the key owner never receives)."""
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _public_engine(n_bytes)
    return ints_to_bytes(eng.obfuscate_fixed(bytes_to_ints(data, width)), width)


def w_uniform_obfuscators(n_bytes: bytes, count: int, width: int) -> bytes:
    """``count`` uniform obfuscators ``r^n mod n^2`` (``r`` uniform in ``Z_n^*``), computed ahead of use."""
    from ._raw import ints_to_bytes, uniform_obfuscators

    return ints_to_bytes(uniform_obfuscators(int.from_bytes(n_bytes, "big"), int(count)), width)


def w_histogram(n_bytes: bytes, data: bytes, width: int, bins: np.ndarray, n_bins: int) -> bytes:
    """Paillier bucket sums of a chunk of rows, feature-major bytes (:func:`fedcredit.crypto._buckets.feature_bucket_sums`)."""
    from gmpy2 import mpz

    from ._buckets import feature_bucket_sums
    from ._raw import bytes_to_ints, ints_to_bytes

    n = mpz(int.from_bytes(n_bytes, "big"))
    return ints_to_bytes(feature_bucket_sums(bytes_to_ints(data, width), bins, n_bins, n * n), width)


# ---------------------------------------------------------------- Okamoto-Uchiyama (fedcredit.crypto.ou)
def _ou_owner_engine(p_bytes: bytes, q_bytes: bytes, g_bytes: bytes, h_bytes: bytes, m_bits: int, r_bits: int):
    from ._ou_raw import OwnerEngine

    key = ("ou-owner", hashlib.sha256(p_bytes + b"|" + q_bytes + b"|" + g_bytes).digest(), m_bits, r_bits)
    eng = _engines.get(key)
    if eng is None:
        eng = _engines[key] = OwnerEngine(int.from_bytes(p_bytes, "big"), int.from_bytes(q_bytes, "big"),
                                          int.from_bytes(g_bytes, "big"), int.from_bytes(h_bytes, "big"),
                                          m_bits, r_bits)
    return eng


def w_ou_owner_encrypt(p_bytes: bytes, q_bytes: bytes, g_bytes: bytes, h_bytes: bytes, m_bits: int, r_bits: int,
                       ms: list, width: int, hs: bytes = b"") -> bytes:
    """OU encryption by the key owner (CRT) of a chunk of signed ints; fixed-width ciphertext bytes.
    ``hs``: precomputed ``h^r mod n`` (fixed width) for the first plaintexts (:func:`w_ou_owner_randomizers`)."""
    from ._raw import bytes_to_ints, ints_to_bytes

    eng = _ou_owner_engine(p_bytes, q_bytes, g_bytes, h_bytes, m_bits, r_bits)
    return ints_to_bytes(eng.encrypt(ms, bytes_to_ints(hs, width) if hs else ()), width)


def w_ou_owner_randomizers(p_bytes: bytes, q_bytes: bytes, g_bytes: bytes, h_bytes: bytes, m_bits: int, r_bits: int,
                           count: int, width: int) -> bytes:
    """``count`` fresh ``h^r mod n`` of the key owner's encryption (short ``r``), fixed-width bytes (idle pool)."""
    from ._raw import ints_to_bytes

    return ints_to_bytes(_ou_owner_engine(p_bytes, q_bytes, g_bytes, h_bytes, m_bits, r_bits).randomizers(count),
                         width)


def w_ou_histogram(n_bytes: bytes, data: bytes, width: int, bins: np.ndarray, n_bins: int) -> bytes:
    """OU bucket sums of a chunk of rows, feature-major bytes (:func:`fedcredit.crypto._buckets.feature_bucket_sums`)."""
    from gmpy2 import mpz

    from ._buckets import feature_bucket_sums
    from ._raw import bytes_to_ints, ints_to_bytes

    n = mpz(int.from_bytes(n_bytes, "big"))
    return ints_to_bytes(feature_bucket_sums(bytes_to_ints(data, width), bins, n_bins, n), width)
