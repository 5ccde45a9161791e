"""CKKS backend of vertical LR: rows in slots, per-slot masked products, slot sums by the key holder.

A mini-batch of ``b`` rows is ``ceil(b / 4096)`` CKKS ciphertexts
(``poly_modulus_degree=8192``). The only product the protocol needs under
encryption is ``X_pᵀ [[v]]`` (a party's plain columns times an encrypted
vector over the batch rows). Summing over rows inside a ciphertext needs
slot rotations (12 key switches per column at 4096 slots), so instead the
computing party sends, per column ``j``, the *per-slot* products masked
slot by slot::

    [[x_j ⊙ v + R_j]]      R_j uniform in [-2^MASK_BITS, 2^MASK_BITS] per slot

with ``R_j`` added as a fresh public-key encryption (which also re-randomizes
the ciphertext: without it the party that made ``[[v]]`` could divide the
``c1`` components and recover ``x_j``). The key holder decrypts, sums the
slots and returns one number per column; the computing party subtracts
``sum(R_j)``. No rotations and no Galois keys are needed, so the public
context sent to peers holds only the public and relinearization keys.

What the key holder sees per column: ``x_ij v_i + R_ij`` per row, where the
mask hides ``|x v| <= 2^5`` with statistical distance about
``2^-(MASK_BITS - 5)`` = 2^-25 per value (a real-valued mask cannot hide
perfectly the way a uniform mask mod n does in Paillier), and the CKKS
approximation noise (semi-honest model; the noise is not flooded).

Precision (``tests/test_hetero_lr_ckks.py``): about 1e-6 absolute per masked
slot sum of 4,000 rows, so gradients agree with the exact protocol to ~1e-9.
"""

from __future__ import annotations

import secrets

import numpy as np

from ...crypto.blob import CipherBlob
from ...crypto.ckks import CKKSContext
from ...errors import ProtocolError

__all__ = ["MASK_BITS", "new_context", "context_to_wire", "context_from_wire", "masks", "masked_products",
           "slot_sums", "recv_vector", "recv_vectors"]

#: Per-slot masks are uniform in [-2^MASK_BITS, 2^MASK_BITS].
MASK_BITS = 30
POLY_MODULUS_DEGREE = 8192
#: one plaintext multiplication after encryption (60-bit first and special primes, 2 x 40-bit data primes)
COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)
SCALE_BITS = 40


def new_context() -> CKKSContext:
    """The key holder's context (secret key included; never serialized with it)."""
    return CKKSContext.generate(poly_modulus_degree=POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=COEFF_MOD_BIT_SIZES,
                                global_scale_bits=SCALE_BITS, galois_keys=False)


def context_to_wire(ctx: CKKSContext) -> dict:
    """``{"scheme": "ckks", "context": bytes}``: the public context only (no secret key, no Galois keys)."""
    return {"scheme": "ckks", "context": ctx.serialize(save_secret_key=False, save_galois_keys=False)}


def context_from_wire(d: dict) -> CKKSContext:
    if not isinstance(d, dict) or d.get("scheme") != "ckks" or not isinstance(d.get("context"), bytes):
        raise ProtocolError("hetero_lr: expected a CKKS public context")
    ctx = CKKSContext.from_serialized(d["context"])
    if ctx.is_private:
        raise ProtocolError("hetero_lr: a peer sent a CKKS context with its secret key")
    return ctx


def masks(count: int) -> np.ndarray:
    """``count`` uniform reals in ``[-2^MASK_BITS, 2^MASK_BITS)`` from ``secrets`` (53-bit resolution)."""
    u = np.frombuffer(secrets.token_bytes(8 * int(count)), dtype=np.uint64) >> np.uint64(11)
    return (u.astype(np.float64) * 2.0**-52 - 1.0) * float(2**MASK_BITS)


def masked_products(ctx: CKKSContext, v, X: np.ndarray):
    """Per column ``j`` of ``X`` (b, f): ``[[X[:, j] ⊙ v + R_j]]``; returns (blobs, ``sum_i R_ij`` per column).

    A column of ones (the intercept) skips the multiplication.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] != len(v):
        raise ProtocolError(f"hetero_lr: {len(v)} encrypted values for {X.shape[0]} rows")
    blobs, rsum = [], np.empty(X.shape[1])
    for j in range(X.shape[1]):
        R = masks(X.shape[0])
        col = X[:, j]
        prod = v if np.all(col == 1.0) else v.mul_plain(col)
        blobs.append((prod + ctx.encrypt(R)).to_blob())
        rsum[j] = float(np.sum(R))
    return blobs, rsum


def slot_sums(ctx: CKKSContext, blobs, length: int) -> list[float]:
    """Key holder: decrypt each masked vector and sum its ``length`` slots."""
    out = []
    for b in blobs:
        v = ctx.vector_from_blob(b)
        if len(v) != length:
            raise ProtocolError(f"hetero_lr: a masked vector has {len(v)} values, expected {length}")
        out.append(float(np.sum(ctx.decrypt(v))))
    return out


def recv_vector(ctx: CKKSContext, blob, length: int, what: str):
    v = ctx.vector_from_blob(blob)
    if len(v) != length:
        raise ProtocolError(f"hetero_lr: {what} has {len(v)} values, expected {length}")
    return v


#: a bound on the columns a key holder decrypts per message
MAX_COLUMNS = 4096


def recv_vectors(value, what: str) -> list:
    """A non-empty list of :class:`CipherBlob` (the CKKS form of GRAD), at most ``MAX_COLUMNS``."""
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_COLUMNS
            or not all(isinstance(b, CipherBlob) for b in value)):
        raise ProtocolError(f"hetero_lr: {what} must be a list of 1 to {MAX_COLUMNS} encrypted vectors")
    return value
