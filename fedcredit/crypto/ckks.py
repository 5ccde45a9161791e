"""CKKS companion (TenSEAL): approximate arithmetic on encrypted float vectors.

For horizontal (FedAvg) aggregation and the CKKS variant of hetero LR, where
approximate results are acceptable and batching (4,096 values per ciphertext at
``poly_modulus_degree=8192``) makes encryption far cheaper per value than Paillier.

Security and precision
----------------------
Defaults follow the HE standard (homomorphicencryption.org, 128-bit classical
security): ``poly_modulus_degree=8192`` with ``coeff_mod_bit_sizes=(60, 40, 40, 60)``
(200 bits of modulus; the 128-bit limit at 8192 is 218), scale ``2^40``.  This
allows one plaintext multiplication (one rescale) after encryption.  Measured
precision with the defaults for values in ``[-1, 1]`` (``tests/test_ckks.py``
checks these bounds): fresh encrypt/decrypt absolute error below ``1e-6``
(typically ~1e-9); after adding 10 vectors below ``1e-5``; after a plaintext
multiply, ``sum`` or ``dot`` of 4,096 values below ``1e-4`` relative to the
magnitude of the result.

A context made by :meth:`CKKSContext.generate` holds the secret key; its
:meth:`~CKKSContext.public` copy does not, and :meth:`~CKKSContext.serialize`
never writes the secret key unless asked (``save_secret_key=True``, for the
owner's own storage only).  Ciphertext blobs carry the fingerprint of the
public key (sha256 of its serialization) and are refused under another key.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from ..errors import ConfigError, DecryptionError
from .blob import CipherBlob

__all__ = ["CKKSContext", "CKKSVector", "SCHEME"]

SCHEME = "ckks"


class CKKSContext:
    """A TenSEAL CKKS context (with or without the secret key).

    Create with :meth:`generate` (owner) or :meth:`from_serialized` (peer).

    Attributes
    ----------
    slots : int
        Values per ciphertext (``poly_modulus_degree / 2``).
    fingerprint : bytes
        sha256 of the serialized public key.
    """

    def __init__(self, ctx: "ts.Context"):
        if not isinstance(ctx, ts.Context):
            raise TypeError("use CKKSContext.generate or CKKSContext.from_serialized")
        self._ctx = ctx
        self._fingerprint: bytes | None = None
        self.slots = int(ctx.seal_context().data.first_context_data().parms().poly_modulus_degree()) // 2

    @classmethod
    def generate(
        cls,
        *,
        poly_modulus_degree: int = 8192,
        coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
        global_scale_bits: int = 40,
        galois_keys: bool = True,
    ) -> "CKKSContext":
        """A new context with a fresh secret key.

        Parameters
        ----------
        poly_modulus_degree : int, default=8192
            Ring dimension; 8192 or 16384 (4096 allows too small a modulus for the
            default chain).
        coeff_mod_bit_sizes : sequence of int, default=(60, 40, 40, 60)
            Modulus chain; the sum must stay within the 128-bit security bound
            (218 bits at 8192, 438 at 16384).
        global_scale_bits : int, default=40
            Scale of encoded values (``2^40``).
        galois_keys : bool, default=True
            Generate rotation keys (needed by :meth:`CKKSVector.sum` and ``dot``).
        """
        limits = {8192: 218, 16384: 438, 32768: 881}
        if poly_modulus_degree not in limits:
            raise ConfigError(
                f"The 'poly_modulus_degree' parameter of CKKSContext.generate must be in {sorted(limits)}. "
                f"Got {poly_modulus_degree!r} instead."
            )
        total = sum(int(b) for b in coeff_mod_bit_sizes)
        if total > limits[poly_modulus_degree]:
            raise ConfigError(
                f"coeff_mod_bit_sizes sum to {total} bits; at poly_modulus_degree={poly_modulus_degree} "
                f"128-bit security allows at most {limits[poly_modulus_degree]}."
            )
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=int(poly_modulus_degree),
                         coeff_mod_bit_sizes=[int(b) for b in coeff_mod_bit_sizes])
        ctx.global_scale = 2.0 ** int(global_scale_bits)
        if galois_keys:
            ctx.generate_galois_keys()
        return cls(ctx)

    @classmethod
    def from_serialized(cls, data: bytes) -> "CKKSContext":
        """Load a context written by :meth:`serialize`."""
        try:
            return cls(ts.context_from(bytes(data)))
        except Exception:
            raise ConfigError("not a serialized CKKS context") from None

    def __repr__(self) -> str:
        return f"CKKSContext(slots={self.slots}, private={self.is_private})"

    def __reduce__(self):
        raise TypeError("serialize CKKS contexts explicitly with serialize(); pickling is refused")

    @property
    def is_private(self) -> bool:
        """True if this context holds the secret key."""
        return bool(self._ctx.is_private())

    def public(self) -> "CKKSContext":
        """A copy without the secret key (safe to send to peers)."""
        c = self._ctx.copy()
        c.make_context_public()
        out = CKKSContext(c)
        out._fingerprint = self._fingerprint
        return out

    def serialize(self, *, save_secret_key: bool = False, save_galois_keys: bool = True) -> bytes:
        """Bytes of the context; the secret key only with ``save_secret_key=True``."""
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=bool(save_secret_key) and self.is_private,
            save_galois_keys=bool(save_galois_keys),
            save_relin_keys=True,
        )

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            pub = self._ctx.serialize(save_public_key=True, save_secret_key=False,
                                      save_galois_keys=False, save_relin_keys=False)
            self._fingerprint = hashlib.sha256(pub).digest()
        return self._fingerprint

    # -------------------------------------------------- encrypt / decrypt
    def encrypt(self, x) -> "CKKSVector":
        """Encrypt a 1-D float vector (split into ``slots``-sized ciphertexts)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        if not np.all(np.isfinite(a)):
            raise ConfigError("cannot encrypt NaN or infinite values")
        chunks = [ts.ckks_vector(self._ctx, a[i : i + self.slots].tolist()) for i in range(0, max(len(a), 1), self.slots)]
        if len(a) == 0:
            chunks = []
        return CKKSVector(self, chunks, len(a))

    def decrypt(self, v: "CKKSVector") -> np.ndarray:
        """Decrypt to float64.

        Raises
        ------
        DecryptionError
            Opaquely, if this context has no secret key or the vector is under another key.
        """
        if not isinstance(v, CKKSVector) or not self.is_private or v.context.fingerprint != self.fingerprint:
            raise DecryptionError()
        try:
            sk = self._ctx.secret_key()
            out = [np.asarray(c.decrypt(sk), dtype=np.float64) for c in v._chunks]
        except Exception:
            raise DecryptionError() from None
        return np.concatenate(out)[: len(v)] if out else np.zeros(0)

    def vector_from_blob(self, blob: CipherBlob) -> "CKKSVector":
        """Rebuild a vector from :meth:`CKKSVector.to_blob`; refuses another key (opaque)."""
        if (
            not isinstance(blob, CipherBlob)
            or blob.scheme != SCHEME
            or not secrets.compare_digest(bytes(blob.key_fingerprint), self.fingerprint)
        ):
            raise DecryptionError()
        try:
            length = int(blob.meta["length"])
            n_chunks = int(blob.meta["chunks"])
            data = blob.data
            chunks, pos = [], 0
            for _ in range(n_chunks):
                (size,) = struct.unpack_from(">Q", data, pos)
                pos += 8
                chunks.append(ts.ckks_vector_from(self._ctx, data[pos : pos + size]))
                pos += size
            if pos != len(data) or length < 0 or length > n_chunks * self.slots:
                raise ValueError
        except Exception:
            raise DecryptionError() from None
        return CKKSVector(self, chunks, length)


class CKKSVector:
    """An encrypted float vector (one or more CKKS ciphertexts). Operations return new vectors."""

    __slots__ = ("context", "_chunks", "_len")

    def __init__(self, context: CKKSContext, chunks: list, length: int):
        self.context = context
        self._chunks = chunks
        self._len = int(length)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"CKKSVector(len={self._len}, ciphertexts={len(self._chunks)})"

    def _check(self, other: "CKKSVector") -> None:
        if not isinstance(other, CKKSVector):
            raise TypeError(f"expected a CKKSVector, got {type(other).__name__}")
        if other.context.fingerprint != self.context.fingerprint:
            raise ConfigError("CKKS vectors under different keys")
        if len(other) != len(self):
            raise ConfigError(f"length mismatch: {len(self)} vs {len(other)}")

    def _plain_chunks(self, values) -> list:
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size == 1:
            return [float(a[0])] * len(self._chunks)
        if a.size != len(self):
            raise ConfigError(f"length mismatch: {len(self)} vs {a.size}")
        s = self.context.slots
        return [a[i * s : (i + 1) * s].tolist() for i in range(len(self._chunks))]

    def __add__(self, other: "CKKSVector") -> "CKKSVector":
        if not isinstance(other, CKKSVector):
            return NotImplemented
        self._check(other)
        return CKKSVector(self.context, [a + b for a, b in zip(self._chunks, other._chunks)], self._len)

    def __sub__(self, other: "CKKSVector") -> "CKKSVector":
        if not isinstance(other, CKKSVector):
            return NotImplemented
        self._check(other)
        return CKKSVector(self.context, [a - b for a, b in zip(self._chunks, other._chunks)], self._len)

    def add_plain(self, values) -> "CKKSVector":
        """Add a plaintext scalar or vector."""
        return CKKSVector(self.context, [c + p for c, p in zip(self._chunks, self._plain_chunks(values))], self._len)

    def mul_plain(self, values) -> "CKKSVector":
        """Multiply by a plaintext scalar or vector (uses one level of the modulus chain)."""
        return CKKSVector(self.context, [c * p for c, p in zip(self._chunks, self._plain_chunks(values))], self._len)

    def sum(self) -> "CKKSVector":
        """Sum of all values as a length-1 vector (needs Galois keys)."""
        if not self._chunks:
            return self.context.encrypt([0.0])
        total = self._chunks[0].sum()
        for c in self._chunks[1:]:
            total = total + c.sum()
        return CKKSVector(self.context, [total], 1)

    def dot(self, values) -> "CKKSVector":
        """Inner product with a plaintext vector, as a length-1 vector."""
        parts = [c.dot(p) for c, p in zip(self._chunks, self._plain_chunks(values))]
        if not parts:
            return self.context.encrypt([0.0])
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return CKKSVector(self.context, [total], 1)

    def to_blob(self) -> CipherBlob:
        """One opaque serialization (length-prefixed ciphertexts) with the key fingerprint."""
        data = b"".join(struct.pack(">Q", len(s)) + s for s in (c.serialize() for c in self._chunks))
        return CipherBlob(
            scheme=SCHEME,
            key_fingerprint=self.context.fingerprint,
            width=0,
            count=1,
            data=data,
            meta={"length": self._len, "chunks": len(self._chunks)},
        )

    @classmethod
    def from_blob(cls, context: CKKSContext, blob: CipherBlob) -> "CKKSVector":
        """Same as ``context.vector_from_blob(blob)``."""
        return context.vector_from_blob(blob)
