"""Test helpers.  The only place that hands out Paillier and OU keys below 2048 bits.

Small keys make logic tests fast; they offer no security and are refused
everywhere else (``generate_keypair``, ``PublicKey.from_wire``), except for a
key created here *in this process* (so in-memory multi-party tests work while
no peer can ever talk a party into a small key).
"""

from __future__ import annotations

import threading

from .crypto import paillier as _paillier
from .crypto.paillier import keys as _paillier_keys

__all__ = ["small_keypair", "small_ou_keypair", "SMALL_KEY_BITS"]

#: Sizes available from :func:`small_keypair`.
SMALL_KEY_BITS = (256, 512, 768, 1024, 1536)

_cache: dict[tuple[int, int], tuple] = {}
_lock = threading.Lock()


def small_keypair(bits: int = 1024, *, index: int = 0, cached: bool = True):
    """An insecure Paillier key pair for logic tests.

    Parameters
    ----------
    bits : int, default=1024
        One of :data:`SMALL_KEY_BITS`, or any even size >= 2048.
    index : int, default=0
        Cache slot: tests that need two different keys of one size use 0 and 1.
    cached : bool, default=True
        Reuse the pair made earlier in this process for ``(bits, index)``.

    Returns
    -------
    (PublicKey, PrivateKey)
    """
    bits = int(bits)
    if bits % 2 or bits < 128:
        raise ValueError(f"small_keypair bits must be even and >= 128, got {bits}")
    with _lock:
        if cached and (bits, index) in _cache:
            return _cache[(bits, index)]
        if bits >= _paillier.MIN_KEY_BITS:
            pair = _paillier.generate_keypair(bits)
        else:
            pair = _make_small(bits)
        if cached:
            _cache[(bits, index)] = pair
        return pair


def _make_small(bits: int):
    import gmpy2

    half = bits // 2
    while True:
        p = _paillier_keys._random_prime(half)
        q = _paillier_keys._random_prime(bits - half)
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    _paillier_keys._TEST_MODULI.add(int(n))
    pk = _paillier.PublicKey(int(n))
    return pk, _paillier.PrivateKey(pk, int(p), int(q))


def small_ou_keypair(bits: int = 1024, *, index: int = 0, cached: bool = True):
    """An insecure Okamoto-Uchiyama key pair for logic tests (``n = p^2 q`` of ``bits`` bits).

    Like :func:`small_keypair`: refused everywhere except in this process. At 1024 bits the
    guarded plaintext space is 277 bits (3 packed ``(g, h)`` sums of 2,000 rows per ciphertext).

    Parameters
    ----------
    bits : int, default=1024
        At least 384 (the plaintext space must stay above the 64-bit guard).
    index : int, default=0
    cached : bool, default=True

    Returns
    -------
    (ou.PublicKey, ou.PrivateKey)
    """
    from .crypto import ou as _ou

    bits = int(bits)
    with _lock:
        key = ("ou", bits, index)
        if cached and key in _cache:
            return _cache[key]
        pair = _ou.generate_keypair(bits) if bits >= _ou.MIN_KEY_BITS else _ou.keys._small_keypair(bits)
        if cached:
            _cache[key] = pair
        return pair
