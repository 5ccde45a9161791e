"""CKKS vectors: additions, plaintext products, sums and the strided matrix product (see the package docstring)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from ...errors import ConfigError
from ..blob import CipherBlob
from ._seal import _seal_to_bytes, _tenseal_vector_bytes

if TYPE_CHECKING:  # the context creates vectors; a vector only holds its context
    from .context import CKKSContext

__all__ = ["CKKSVector", "SCHEME", "ROTATION_STEPS", "stride_for"]

SCHEME = "ckks"
#: Rotation steps that :meth:`CKKSVector.matvec_strided` uses (baby steps of 1, giant steps of up to 16 slots).
ROTATION_STEPS = (1, 2, 4, 8, 16)
_MAX_BABY = 16


def stride_for(n_columns: int) -> int:
    """The slot stride ``F`` of :meth:`CKKSVector.matvec_strided` for ``n_columns`` columns: the smallest power of
    two ``>= ceil(n_columns / 2)`` (two columns per residue class, in the real and imaginary parts)."""
    return 1 << max((int(n_columns) + 1) // 2 - 1, 0).bit_length()


def _baby_step(stride: int) -> int:
    return min(_MAX_BABY, 1 << ((stride.bit_length() - 1) // 2))


class CKKSVector:
    """An encrypted float vector (one or more CKKS ciphertexts). Operations return new vectors."""

    __slots__ = ("context", "_chunks", "_len", "_stride")

    def __init__(self, context: CKKSContext, chunks: list, length: int, *, stride: int = 0):
        self.context = context
        self._chunks = chunks
        self._len = int(length)
        self._stride = int(stride)

    @property
    def stride(self) -> int:
        """0 for an ordinary vector; ``F`` for a result of :meth:`matvec_strided` (see there)."""
        return self._stride

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

    def matvec_strided(self, X, *, mask) -> "CKKSVector":
        """``Xᵀ v`` for a plain matrix ``X``, packed into one ciphertext, masked and re-randomized.

        Parameters
        ----------
        X : array-like of shape (len(self), f)
            Plain values (any finite floats; products are taken at scale ``2^40``).
        mask : array-like of complex, shape (slots,)
            Added to the result slot by slot as a fresh public-key encryption (which also
            re-randomizes it: without this the owner of the secret key, if it made ``v``,
            could recover ``X`` from the ciphertext components). Mask the real and the
            imaginary parts: both carry products.

        Returns
        -------
        CKKSVector
            One ciphertext of ``slots`` values with ``stride = F = stride_for(f)``: with
            ``Y[r, c] = X[r, c] + 1j X[r, F + c]`` (columns past ``f`` are 0), slot ``i`` holds
            ``mask[i] + sum_{k<F} v[r] Y[r, i mod F]``, ``r = i + k`` (rows past the end count as 0;
            several chunks of ``v`` add up), so the real parts of slots ``i = j (mod F)`` sum to
            ``(Xᵀ v)_j`` and their imaginary parts to ``(Xᵀ v)_(F+j)``, plus those mask values
            (:meth:`CKKSContext.decrypt_strided`).

        Notes
        -----
        Baby-step/giant-step diagonals: with ``s`` baby steps, ``inner_g = sum_b rot(v, b) ⊙ D_{g,b}``,
        ``D_{g,b}[i] = Y[i+b, (i - g s) mod F]``, and the result ``sum_g rot(inner_g, g s)`` by Horner's
        rule: ``s - 1`` rotations by 1, ``F/s - 1`` rotations by ``s``, ``F`` plaintext products per chunk
        (one rescale in all). For up to 16 columns: 4 rotations and 8 products. Needs rotation keys for
        steps 1 and ``s`` (:data:`ROTATION_STEPS`).
        """
        ctx = self.context
        S = ctx.slots
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(self) or X.shape[1] < 1:
            raise ConfigError(f"matvec_strided: X must have shape ({len(self)}, f >= 1); got {X.shape}")
        f = X.shape[1]
        F = stride_for(f)
        if F > S:
            raise ConfigError(f"matvec_strided: {f} columns exceed {2 * S} (two per slot)")
        m = np.asarray(mask, dtype=np.complex128).ravel()
        if m.size != S:
            raise ConfigError(f"matvec_strided: the mask must have {S} values; got {m.size}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(m))):
            raise ConfigError("cannot multiply or mask with NaN or infinite values")
        s = _baby_step(F)
        G = F // s
        seal = ctx._seal()
        ev, enc = seal.evaluator, seal.encoder
        keys = None  # one GaloisKeys object; _rotation checks that it holds each step used
        if s > 1:
            keys = ctx._rotation(1)
        if G > 1:
            keys = ctx._rotation(s)
        scale = float(ctx._ctx.global_scale)
        mask_bits = float(np.log2(np.abs(m).max() + 1.0))
        for chunk in self._chunks:  # room for the product after its rescale (else SEAL would wrap silently)
            ct = chunk.data.ciphertext()[0]
            primes = [q.bit_count() for q in seal.context.get_context_data(ct.parms_id()).parms().coeff_modulus()]
            out_scale_bits = np.log2(ct.scale) + np.log2(scale) - primes[-1]
            if len(primes) < 2 or out_scale_bits + max(mask_bits, 20.0) + 12 >= sum(primes[:-1]):
                raise ConfigError("matvec_strided: the vector has no level left for a product at this scale")
        idx = np.arange(S)
        inner = [None] * G
        for t, chunk in enumerate(self._chunks):
            part = X[t * S : (t + 1) * S]
            if not part.any():
                continue
            Xc = np.zeros((S, 2 * F))
            Xc[: part.shape[0], :f] = part
            Y = Xc[:, :F] + 1j * Xc[:, F:]
            babies = [chunk.data.ciphertext()[0]]
            for _ in range(1, s):
                r = sealapi.Ciphertext()
                ev.rotate_vector(babies[-1], 1, keys, r)
                babies.append(r)
            for g in range(G):
                for b in range(s):
                    d = Y[(idx + b) % S, (idx - g * s) % F]
                    if not d.any():
                        continue
                    pt = sealapi.Plaintext()
                    enc.encode(d.tolist(), babies[b].parms_id(), scale, pt)
                    prod = sealapi.Ciphertext()
                    ev.multiply_plain(babies[b], pt, prod)
                    if inner[g] is None:
                        inner[g] = prod
                    else:
                        ev.add_inplace(inner[g], prod)
        acc = None
        for g in range(G - 1, -1, -1):  # Horner: acc = rot(acc, s) + inner_g
            if acc is not None:
                r = sealapi.Ciphertext()
                ev.rotate_vector(acc, s, keys, r)
                acc = r
            if inner[g] is not None:
                if acc is None:
                    acc = inner[g]
                else:
                    ev.add_inplace(acc, inner[g])
        pt = sealapi.Plaintext()
        if acc is None:  # X is all zero: the result is the mask alone
            acc = sealapi.Ciphertext()
            enc.encode(m.tolist(), scale, pt)
            seal.encryptor.encrypt(pt, acc)
        else:
            ev.rescale_to_next_inplace(acc)
            enc.encode(m.tolist(), acc.parms_id(), acc.scale, pt)
            fresh = sealapi.Ciphertext()
            seal.encryptor.encrypt(pt, fresh)
            ev.add_inplace(acc, fresh)
        data = _tenseal_vector_bytes([_seal_to_bytes(acc)], [S], scale)
        return CKKSVector(ctx, [ts.ckks_vector_from(ctx._ctx, data)], S, stride=F)

    def to_blob(self) -> CipherBlob:
        """One opaque serialization (length-prefixed ciphertexts) with the key fingerprint."""
        data = b"".join(struct.pack(">Q", len(s)) + s for s in (c.serialize() for c in self._chunks))
        return CipherBlob(
            scheme=SCHEME,
            key_fingerprint=self.context.fingerprint,
            width=0,
            count=1,
            data=data,
            meta={"length": self._len, "chunks": len(self._chunks), **({"stride": self._stride} if self._stride else {})},
        )

    @classmethod
    def from_blob(cls, context: CKKSContext, blob: CipherBlob) -> "CKKSVector":
        """Same as ``context.vector_from_blob(blob)``."""
        return context.vector_from_blob(blob)
