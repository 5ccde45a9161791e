"""The additive scheme of a SecureBoost run: Okamoto-Uchiyama (``"ou"``) or Paillier (``"paillier"``).

Both backends (:mod:`fedcredit.crypto.ou`, :mod:`fedcredit.crypto.paillier`) have
the same vector interface (encrypt, ``+``, ``histogram``, ``concat``,
``compress``, ``to_blob``/``vector_from_blob``, ``decrypt_signed``); this module
holds the few places where a run must name the scheme: key generation and the
size of the plaintext space the ``(g, h)`` codec packs into. The public key
travels in SETUP in the one public-key wire shape of ``protocols/_spec.py``,
which names its scheme.

Why OU is safe here (docs/crypto.md, "OU", and docs/secureboost.md): the guest
owns the key and is the only party that decrypts; what it decrypts is the hosts'
compressed histogram sums, through the guarded ``decrypt_signed`` (all or nothing:
one plaintext at or above ``2^plaintext_bits`` fails the whole message with an
opaque ``DecryptionError``, which ends the run). No decrypted value ever leaves
the guest: what it sends after decrypting (SPLIT_REQ, the next HIST_REQ, PREDICT_REQ,
START) holds node ids, feature and bin indices and row positions chosen from sums
that passed the guard. Every run uses a fresh key pair.
"""

from __future__ import annotations

from ...crypto import ou, paillier
from ...errors import ConfigError

__all__ = ["SCHEMES", "DEFAULT_HE", "generate_keypair", "scheme_of", "plaintext_bits", "concat", "compress"]

#: The schemes a run may use (the ``he`` parameter).
SCHEMES = ("ou", "paillier")
#: Default of ``VerticalSecureBoost(he=...)``: OU, the faster end to end on both the narrow default_credit and
#: wide host tables once the key owner encrypts with a short exponent (same-run A/B figures in docs/secureboost.md,
#: "Scheme"). Both schemes run on the local pool and on a distributed (Dask) compute backend.
DEFAULT_HE = "ou"

_MODULES = {"ou": ou, "paillier": paillier}


def _module(he: str):
    if he not in _MODULES:
        raise ConfigError(f"unknown additive scheme {he!r}; expected one of {', '.join(SCHEMES)}")
    return _MODULES[he]


def generate_keypair(he: str, bits: int):
    """A fresh ``bits``-bit key pair of scheme ``he`` (looked up at call time, so tests may patch it)."""
    return _module(he).generate_keypair(bits)


def scheme_of(key) -> str:
    """``"ou"`` or ``"paillier"`` for a public or private key, or a cipher vector.

    Raises
    ------
    ConfigError
        For any other object.
    """
    if isinstance(key, (ou.PublicKey, ou.PrivateKey, ou.CipherVector)):
        return "ou"
    if isinstance(key, (paillier.PublicKey, paillier.PrivateKey, paillier.CipherVector)):
        return "paillier"
    raise ConfigError(f"not a SecureBoost key or cipher vector: {type(key).__name__}")


def plaintext_bits(pk) -> int:
    """Bits of plaintext that packing may fill: OU's guarded space (618 at 2048 bits), Paillier's ``|n| - 1``.

    A packed ciphertext of ``k`` signed items of ``item_bits`` bits has magnitude below
    ``2^(k item_bits - 1)``: it fits when ``k item_bits <= plaintext_bits(pk)``.
    """
    if scheme_of(pk) == "ou":
        return int(pk.plaintext_bits)
    return int(pk.bits) - 1


def concat(vectors: list):
    """Concatenate cipher vectors of one scheme."""
    return _module(scheme_of(vectors[0])).concat(vectors)


def compress(cv, *, item_bits: int):
    """Cipher compression in the vector's scheme: ``plaintext_bits(pk) // item_bits`` sums per ciphertext."""
    return _module(scheme_of(cv)).compress(cv, item_bits=item_bits)
