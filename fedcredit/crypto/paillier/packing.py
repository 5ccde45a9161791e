"""Cipher compression: several summed packed Paillier ciphertexts shifted into one before decryption.

The one packing in use, SecureBoost's signed ``g * 2^S + h`` per row, and its unpacking
live with the protocol (:class:`fedcredit.protocols.secureboost.guest.GHCodec`).
"""

from __future__ import annotations

import numpy as np
from gmpy2 import mpz, powmod

from ...errors import ConfigError
from .._raw import _obj_array
from .vector import CipherVector

__all__ = ["compress"]


def compress(cv: CipherVector, *, item_bits: int) -> CipherVector:
    """Shift several summed packed ciphertexts into one ("cipher compression").

    Item ``i`` of each group of ``k = (n_bits - 1) // item_bits`` lands at bits
    ``[i * item_bits, (i + 1) * item_bits)`` of the plaintext (Horner:
    ``acc = acc^(2^item_bits) * c_i``), i.e. the plaintext is ``sum_i x_i 2^(i item_bits)``.
    Items may be signed, ``|x_i| < 2^(item_bits - 1)``: decrypt with ``decrypt_signed`` and
    peel items off the low end with a borrow (as
    :meth:`fedcredit.protocols.secureboost.guest.GHCodec.unpack` does); the sum never
    wraps because ``k * item_bits < n_bits - 1``.

    Returns
    -------
    CipherVector
        ``ceil(len(cv) / k)`` ciphertexts, derived (re-randomized by ``to_blob``).
    """
    pk = cv.public_key
    if isinstance(item_bits, bool) or not isinstance(item_bits, (int, np.integer)) or item_bits < 1:
        raise ConfigError(f"The 'item_bits' parameter of compress must be an int >= 1. Got {item_bits!r} instead.")
    k = (pk.bits - 1) // int(item_bits)
    if k < 1:
        raise ConfigError(f"item_bits={item_bits} does not fit in a {pk.bits}-bit plaintext")
    nsq = pk._mnsq
    shift = mpz(1) << int(item_bits)
    out = []
    cs = cv._c
    for lo in range(0, len(cs), k):
        chunk = cs[lo : lo + k]
        acc = chunk[-1]
        for c in chunk[-2::-1]:
            acc = powmod(acc, shift, nsq) * c % nsq
        out.append(acc)
    return cv._derived(_obj_array(out), 0)
