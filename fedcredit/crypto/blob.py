"""Neutral wire form of a ciphertext vector.

Crypto engines convert their vectors to a :class:`CipherBlob` (``to_blob``)
and back (``PublicKey.vector_from_blob``); the transport only ever sees the
blob, so it needs no knowledge of any scheme and never touches a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
