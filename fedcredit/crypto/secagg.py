"""Primitives for secure aggregation (Bonawitz et al., CCS 2017, and its descendants).

The protocol itself lives in :mod:`fedcredit.protocols.homo`; this module holds
the pieces it is built from, each small enough to test on its own:

* **Key agreement** — X25519 (:class:`KeyPair`, :func:`pairwise_secret`), the raw
  shared secret run through HKDF-SHA256 bound to both parties' names, so the two
  ends of a pair derive one 32-byte *pairwise secret* and nothing else does.
* **Key derivation** — :func:`derive_key` turns a pairwise secret into
  independent purpose-bound keys: a per-round mask seed
  (``"mask", round``) and a share-encryption key (``"share-enc"``). Revealing a
  per-round mask seed reveals nothing about the long-term secret or other
  rounds (HKDF is a PRF).
* **Mask expansion** — :func:`expand_mask` runs ChaCha20 over zeros to produce
  ``n`` uniform 64-bit ring elements at memory speed (numpy views the keystream).
* **Ring arithmetic** — everything is in Z/2^64 (``uint64`` wraps natively).
  :func:`quantize` scales values in ``[-clip, clip]`` by ``2**frac_bits`` and
  refuses values outside that range (clipping them would silently change the
  sum: a bank with millions of rows would get a wrong model);
  :func:`check_headroom` refuses settings where the sum of ``n`` such values
  could overflow the signed range, so the de-quantized sum is exact.
* **Shamir secret sharing** over the prime field ``GF(2**521 - 1)``
  (:func:`shamir_split`, :func:`shamir_combine`), big enough for a 256-bit secret
  in one field element.
* **Authenticated encryption** of shares (:func:`seal`, :func:`open_sealed`):
  ChaCha20-Poly1305 with a random 96-bit nonce and associated data that binds
  sender, receiver and round; any failure raises one opaque
  :class:`~fedcredit.errors.DecryptionError`.

All cryptographic randomness comes from :mod:`secrets` (via the OS CSPRNG);
nothing here takes a ``random_state``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError, DecryptionError, ProtocolError

__all__ = [
    "FIELD_PRIME",
    "SEED_BYTES",
    "KeyPair",
    "pairwise_secret",
    "derive_key",
    "mask_seed",
    "expand_mask",
    "quantize",
    "dequantize",
    "check_headroom",
    "shamir_split",
    "shamir_combine",
    "seal",
    "open_sealed",
    "secret_to_int",
    "int_to_secret",
]

#: Shamir field: the Mersenne prime 2^521 - 1 (a 256-bit secret fits in one element).
FIELD_PRIME = 2**521 - 1
#: Bytes of every seed and key handled here.
SEED_BYTES = 32
_NONCE_BYTES = 12
_PROTOCOL_LABEL = b"fedcredit/secagg/v1"


@dataclass
class KeyPair:
    """A long-term X25519 key pair for one client in one job.

    The private key never leaves this object: there is no method that
    serializes it. ``public`` is the 32-byte raw public key to advertise.
    """

    _private: X25519PrivateKey = field(repr=False)
    public: bytes = b""

    @classmethod
    def generate(cls) -> "KeyPair":
        """A fresh key pair from the OS CSPRNG."""
        priv = X25519PrivateKey.generate()
        pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(priv, pub)

    def agree(self, me: str, peer: str, peer_public: bytes) -> bytes:
        """Pairwise secret with ``peer`` (see :func:`pairwise_secret`)."""
        return pairwise_secret(self._private, self.public, me, peer, peer_public)


def pairwise_secret(private: X25519PrivateKey, my_public: bytes, me: str, peer: str, peer_public: bytes) -> bytes:
    """X25519 agreement followed by HKDF-SHA256, symmetric in the two parties.

    Parameters
    ----------
    private : X25519PrivateKey
        This party's private key.
    my_public, peer_public : bytes
        Both raw 32-byte public keys (bound into the derivation).
    me, peer : str
        Both party names (bound into the derivation, in sorted order).

    Returns
    -------
    bytes
        32 bytes that only ``me`` and ``peer`` can compute.

    Raises
    ------
    ProtocolError
        ``peer_public`` is not a valid X25519 public key (e.g. a low-order point).
    """
    if not isinstance(peer_public, bytes) or len(peer_public) != 32:
        raise ProtocolError(f"public key of {peer!r} must be 32 bytes")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # all-zero output for low-order points
        raise ProtocolError(f"public key of {peer!r} is invalid: {exc}") from None
    (a, pa), (b, pb) = sorted([(me, my_public), (peer, peer_public)])
    info = b"|".join([_PROTOCOL_LABEL, b"pair", a.encode(), pa, b.encode(), pb])
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(shared)


def derive_key(secret: bytes, purpose: str, *context: str | int) -> bytes:
    """A 32-byte key for one purpose from a secret (HKDF-SHA256, domain separated)."""
    info = b"|".join([_PROTOCOL_LABEL, purpose.encode(), *(str(c).encode() for c in context)])
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(secret)


def mask_seed(pair_secret: bytes, round_index: int) -> bytes:
    """The pairwise mask seed of one round: ``HKDF(pair_secret, "mask", round)``."""
    return derive_key(pair_secret, "mask", round_index)


def expand_mask(seed: bytes, n: int) -> np.ndarray:
    """``n`` uniform elements of Z/2^64 from a 32-byte seed (ChaCha20 keystream).

    Parameters
    ----------
    seed : bytes of length 32
    n : int
        Number of ring elements.

    Returns
    -------
    ndarray of uint64, shape (n,)
    """
    if len(seed) != SEED_BYTES:
        raise ProtocolError(f"mask seed must be {SEED_BYTES} bytes, got {len(seed)}")
    # 16-byte ChaCha20 nonce = 32-bit block counter (0) + 96-bit nonce (fixed: each seed is used once)
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    stream = enc.update(bytes(8 * n))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=True)


def check_headroom(n_clients: int, clip: float, frac_bits: int) -> None:
    """Refuse ring settings where a sum of ``n_clients`` clipped values could overflow.

    The signed range of Z/2^64 is ``[-2**63, 2**63)``; the sum of ``n`` values in
    ``[-clip, clip]`` scaled by ``2**frac_bits`` (rounded) must stay inside it.

    Raises
    ------
    ConfigError
        When ``n_clients * (clip * 2**frac_bits + 1) >= 2**63``.
    """
    if not (0 <= frac_bits <= 52):
        raise ConfigError(f"frac_bits must be in [0, 52]. Got {frac_bits} instead.")
    if not (clip > 0):
        raise ConfigError(f"clip must be > 0. Got {clip} instead.")
    bound = n_clients * (int(np.ceil(clip * 2.0**frac_bits)) + 1)
    if bound >= 2**63:
        raise ConfigError(
            f"secure aggregation ring overflow: {n_clients} clients x clip {clip:g} x 2**{frac_bits} "
            f"does not fit in a signed 64-bit ring; lower clip or frac_bits"
        )


def quantize(x: np.ndarray, *, clip: float, frac_bits: int) -> np.ndarray:
    """Fixed-point encode into Z/2^64: ``round(x * 2**frac_bits) mod 2**64`` for ``|x| <= clip``.

    Parameters
    ----------
    x : array-like of float, shape (d,)
    clip : float
        Bound on ``|x|`` that :func:`check_headroom` accounted for.
    frac_bits : int
        Fractional bits of the fixed-point code (resolution ``2**-frac_bits``).

    Returns
    -------
    ndarray of uint64, shape (d,)

    Raises
    ------
    ConfigError
        A value is NaN, infinite or beyond ``clip``. Such values are refused,
        not clipped: a clipped entry of a sum (e.g. a bank's row count ``n`` or
        its row-weighted parameters ``n * theta`` in FedAvg) gives a wrong
        result without any sign. The message carries no value.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ConfigError("cannot quantize NaN or infinite values")
    if np.any(np.abs(x) > clip):
        raise ConfigError(
            f"secure aggregation: a value exceeds the clipping bound clip={clip:g} and would be clipped, changing "
            f"the sum; raise 'clip' (with fewer 'frac_bits' to keep ring headroom: "
            f"n_clients * clip * 2**frac_bits < 2**63)"
        )
    q = np.rint(x * 2.0**frac_bits).astype(np.int64)
    return q.view(np.uint64)


def dequantize(q: np.ndarray, *, frac_bits: int) -> np.ndarray:
    """Inverse of :func:`quantize` for a sum (read as signed two's complement)."""
    return np.asarray(q, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**frac_bits


# -- Shamir secret sharing ----------------------------------------------------

def secret_to_int(secret: bytes) -> int:
    """A ≤ 64-byte secret as a field element (big-endian; length kept by the caller)."""
    v = int.from_bytes(secret, "big")
    if v >= FIELD_PRIME:
        raise ConfigError("secret too large for the Shamir field")
    return v


def int_to_secret(value: int, length: int = SEED_BYTES) -> bytes:
    """Inverse of :func:`secret_to_int`."""
    if not (0 <= value < 256**length):
        raise DecryptionError("reconstructed secret is out of range")
    return value.to_bytes(length, "big")


def shamir_split(secret: int, xs: Sequence[int], threshold: int) -> dict[int, int]:
    """Split ``secret`` into shares at points ``xs``; any ``threshold`` of them recover it.

    Parameters
    ----------
    secret : int
        A field element, ``0 <= secret < FIELD_PRIME``.
    xs : sequence of int
        Distinct non-zero evaluation points (one per share holder).
    threshold : int
        Number of shares needed, ``1 <= threshold <= len(xs)``. Fewer shares
        reveal nothing about the secret (the polynomial's other coefficients
        are uniform field elements from :mod:`secrets`).

    Returns
    -------
    dict of int to int
        ``{x: f(x)}``.
    """
    if not (1 <= threshold <= len(xs)):
        raise ConfigError(f"threshold must be in [1, {len(xs)}]. Got {threshold} instead.")
    if len(set(xs)) != len(xs) or any(not (0 < x < FIELD_PRIME) for x in xs):
        raise ConfigError("share points must be distinct and non-zero")
    if not (0 <= secret < FIELD_PRIME):
        raise ConfigError("secret is not a field element")
    coeffs = [secret] + [secrets.randbelow(FIELD_PRIME) for _ in range(threshold - 1)]
    out = {}
    for x in xs:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % FIELD_PRIME
        out[x] = acc
    return out


def shamir_combine(shares: dict[int, int], threshold: int) -> int:
    """Recover the secret from at least ``threshold`` shares (Lagrange at 0).

    Uses the first ``threshold`` shares by point; raises
    :class:`~fedcredit.errors.ProtocolError` when fewer are given.
    """
    if len(shares) < threshold:
        raise ProtocolError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    pts = sorted(shares.items())[:threshold]
    secret = 0
    for i, (xi, yi) in enumerate(pts):
        num, den = 1, 1
        for j, (xj, _) in enumerate(pts):
            if i != j:
                num = (num * -xj) % FIELD_PRIME
                den = (den * (xi - xj)) % FIELD_PRIME
        secret = (secret + yi * num * pow(den, -1, FIELD_PRIME)) % FIELD_PRIME
    return secret


# -- authenticated encryption of shares -----------------------------------------

def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """ChaCha20-Poly1305 encrypt: returns ``nonce || ciphertext || tag``.

    The nonce is 96 random bits from :mod:`secrets`; ``associated`` (sender,
    receiver, round...) is authenticated but not encrypted.
    """
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Inverse of :func:`seal`; any failure raises one opaque ``DecryptionError``."""
    if not isinstance(sealed, bytes) or len(sealed) < _NONCE_BYTES + 16:
        raise DecryptionError()
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], associated)
    except InvalidTag:
        raise DecryptionError() from None
