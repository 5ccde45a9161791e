"""Cryptography for fedcredit: Paillier (fast engine, phe-compatible) and CKKS (TenSEAL).

Public names are re-exported here; see :mod:`fedcredit.crypto.paillier` for the
security argument of the fast paths and :mod:`fedcredit.crypto.ckks` for CKKS.
"""

from .blob import CipherBlob
from .paillier import (
    DEFAULT_FRAC_BITS,
    DEFAULT_KEY_BITS,
    CipherVector,
    FixedPoint,
    PrivateKey,
    PublicKey,
    compress,
    concat,
    generate_keypair,
)

__all__ = [
    "CipherBlob",
    "DEFAULT_FRAC_BITS",
    "DEFAULT_KEY_BITS",
    "CipherVector",
    "FixedPoint",
    "PrivateKey",
    "PublicKey",
    "compress",
    "concat",
    "generate_keypair",
]
