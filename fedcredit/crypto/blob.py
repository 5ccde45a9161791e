"""Neutral wire form of a ciphertext vector.

Crypto engines convert their vectors to a :class:`CipherBlob` (``to_blob``)
and back (``PublicKey.vector_from_blob``); the transport only ever sees the
blob, so it needs no knowledge of any scheme and never touches a key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import gmpy2
from gmpy2 import mpz

from ..errors import DecryptionError


@dataclass(frozen=True)
class CipherBlob:
    """Ciphertexts as fixed-width big-endian bytes.

    Parameters
    ----------
    scheme : str
        ``"paillier"`` or ``"ckks"`` (or a future scheme name).
    key_fingerprint : bytes
        Digest of the public key the ciphertexts belong to; receivers reject a
        blob whose fingerprint is not the key they expect.
    width : int
        Bytes per ciphertext (0 for schemes with variable-size opaque
        serializations such as CKKS, where ``count`` is 1).
    count : int
        Number of ciphertexts.
    data : bytes
        ``count * width`` bytes (or one opaque serialization).
    meta : dict of str to int
        Scheme-specific integers (fixed-point exponent, packing layout...).
    """

    scheme: str
    key_fingerprint: bytes
    width: int
    count: int
    data: bytes
    meta: dict[str, int] = field(default_factory=dict)


def check_header(pk, blob, scheme: str, max_frac_bits: int) -> int:
    """The checks of a received blob that need no ciphertext; returns its ``frac_bits``.

    Every additive vector that comes from a peer passes them (``PublicKey.vector_from_blob`` of
    Paillier and OU, :class:`~fedcredit.crypto.partitioned.PartitionedCipherVector`) before any
    ciphertext is parsed: the scheme, the key (constant-time fingerprint comparison), the width,
    the length and the scale.

    Raises
    ------
    DecryptionError
        Opaquely (it never says which check failed).
    """
    if not isinstance(blob, CipherBlob):
        raise DecryptionError()
    if (
        blob.scheme != scheme
        or not secrets.compare_digest(bytes(blob.key_fingerprint), pk.fingerprint)
        or blob.width != pk.width
        or blob.count < 0
        or len(blob.data) != pk.width * blob.count
    ):
        raise DecryptionError()
    frac_bits = blob.meta.get("frac_bits", 0)
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 0 <= frac_bits <= max_frac_bits:
        raise DecryptionError()
    return frac_bits


def check_units(cs, modulus, n) -> None:
    """Check every ciphertext is in ``(0, modulus)`` and a unit mod ``n``; DecryptionError (opaque) if not.

    One gcd for the whole batch: a product of integers is a unit mod ``n`` exactly when each factor
    is (a prime of ``n`` dividing one factor divides the product mod ``n``), so ``gcd(prod mod n, n)
    == 1`` is the same test as a gcd per value at one modular product each -- 8x cheaper at 2048
    bits (24,000 ciphertexts: 0.035 s against 0.29 s).
    """
    acc = mpz(1)
    for c in cs:
        if not 0 < c < modulus:
            raise DecryptionError()
        acc = acc * c % n
    if gmpy2.gcd(acc, n) != 1:
        raise DecryptionError()


def units_from_bytes(data: bytes, width: int, modulus, n) -> list:
    """Fixed-width big-endian ciphertexts as ``mpz``, each checked to be a unit mod ``n`` in ``(0, modulus)``.

    Raises
    ------
    DecryptionError
        Opaquely, for any other value.
    """
    fb, mv = mpz.from_bytes, memoryview(data)
    cs = [fb(mv[i : i + width], "big") for i in range(0, len(mv), width)]
    check_units(cs, modulus, n)
    return cs
