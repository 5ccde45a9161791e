"""CKKS backend of vertical LR: rows in slots, the product ``X_pᵀ [[v]]`` packed into one masked ciphertext.

A mini-batch of ``b`` rows is ``ceil(b / 4096)`` CKKS ciphertexts
(``poly_modulus_degree=8192``). The only product the protocol needs under
encryption is ``X_pᵀ [[v]]`` (a party's plain columns times an encrypted
vector over the batch rows). The computing party evaluates it with
:meth:`~fedcredit.crypto.ckks.CKKSVector.matvec_strided` (baby-step/giant-step
diagonals, two columns per slot in the real and imaginary parts: for up to 16
columns 4 rotations and 8 plaintext products) into *one* ciphertext whose
slot ``i`` holds partial sums for columns ``i mod F`` and ``F + i mod F``
(``F`` = half the number of columns rounded up to a power of two), masked
slot by slot::

    [[ sum_{k<F} v[i+k] (X[i+k, c] + 1j X[i+k, F+c]) + R_i ]]     c = i mod F,
    Re R_i, Im R_i uniform in [-2^MASK_BITS, 2^MASK_BITS]

with ``R`` added as a fresh public-key encryption (which also re-randomizes
the ciphertext: without it the party that made ``[[v]]`` could divide the
ciphertext components and recover ``X``). The key holder decrypts, sums the
real and the imaginary parts of each residue class mod ``F`` and returns
``2F`` numbers; the computing party subtracts its mask sums and keeps the
first ``f``. The key holder makes Galois keys for the rotation steps 1, 2,
4, 8, 16 only and sends them with its public context (never its secret key).

What the key holder sees: per slot and part (real, imaginary), a sum of at
most ``F`` products ``x v`` (``|x v| <= 2^5``) plus a uniform mask, i.e.
statistical distance about ``F 2^5 / 2^(MASK_BITS+1)`` = 2^-23 per value at
``F = 8`` (up to 16 columns; a real-valued mask cannot hide perfectly the way
a uniform mask mod n does in Paillier), and the CKKS approximation noise
(semi-honest model; the noise is not flooded).

Precision (``tests/test_ckks.py``, ``tests/test_hetero_lr_ckks.py``): the
product is taken at SEAL's exact scale; the column sums of a 4,000-row batch
agree with float64 to about 3e-5 absolute (median; up to ~2e-4 when 2,048
slots fall into one residue class -- CKKS noise and the decoding of 2^30-sized
masked values, about 1e-6 per slot), so gradients (sums / 4b) agree with the
exact protocol to ~1e-8 and coefficients to ~5e-8.
"""

from __future__ import annotations

import secrets

import numpy as np

from ...crypto.blob import CipherBlob
from ...crypto.ckks import ROTATION_STEPS, CKKSContext, stride_for
from ...errors import ConfigError, ProtocolError

__all__ = ["MASK_BITS", "new_context", "context_to_wire", "context_from_wire", "masks", "packed_products",
           "packed_sums", "unmask", "slot_sums", "recv_vector"]

#: Per-slot masks are uniform in [-2^MASK_BITS, 2^MASK_BITS].
MASK_BITS = 30
POLY_MODULUS_DEGREE = 8192
#: one plaintext multiplication after encryption (60-bit first and special primes, 2 x 40-bit data primes)
COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)
SCALE_BITS = 40


def new_context() -> CKKSContext:
    """The key holder's context (secret key included; never serialized with it), with the rotation keys
    :meth:`~fedcredit.crypto.ckks.CKKSVector.matvec_strided` needs."""
    return CKKSContext.generate(poly_modulus_degree=POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=COEFF_MOD_BIT_SIZES,
                                global_scale_bits=SCALE_BITS, galois_keys=False, rotation_steps=ROTATION_STEPS)


def context_to_wire(ctx: CKKSContext) -> dict:
    """``{"scheme": "ckks", "context": bytes, "rotations": bytes}``: the public context (no secret key) and the
    rotation keys for steps 1, 2, 4, 8, 16."""
    rot = ctx.rotation_keys()
    if rot is None:
        raise ConfigError("hetero_lr: the CKKS context has no rotation keys (make it with _ckks.new_context())")
    return {"scheme": "ckks", "context": ctx.serialize(save_secret_key=False, save_galois_keys=False),
            "rotations": rot}


def context_from_wire(d: dict) -> CKKSContext:
    if (not isinstance(d, dict) or set(d) != {"scheme", "context", "rotations"} or d["scheme"] != "ckks"
            or not isinstance(d["context"], bytes) or not isinstance(d["rotations"], bytes)):
        raise ProtocolError("hetero_lr: expected a CKKS public context with rotation keys")
    try:
        ctx = CKKSContext.from_serialized(d["context"])
    except ConfigError:
        raise ProtocolError("hetero_lr: the peer's CKKS context does not load") from None
    if ctx.is_private:
        raise ProtocolError("hetero_lr: a peer sent a CKKS context with its secret key")
    if ctx.slots != POLY_MODULUS_DEGREE // 2:
        raise ProtocolError(f"hetero_lr: the peer's CKKS context has {ctx.slots} slots, expected "
                            f"{POLY_MODULUS_DEGREE // 2}")
    try:
        ctx.load_rotation_keys(d["rotations"])
    except ConfigError:
        raise ProtocolError("hetero_lr: the peer's CKKS rotation keys do not fit its context") from None
    return ctx


def masks(count: int) -> np.ndarray:
    """``count`` uniform reals in ``[-2^MASK_BITS, 2^MASK_BITS)`` from ``secrets`` (53-bit resolution)."""
    u = np.frombuffer(secrets.token_bytes(8 * int(count)), dtype=np.uint64) >> np.uint64(11)
    return (u.astype(np.float64) * 2.0**-52 - 1.0) * float(2**MASK_BITS)


def packed_products(ctx: CKKSContext, v, X: np.ndarray):
    """``X (b, f)ᵀ [[v]]`` as one masked ciphertext; returns (blob, ``f`` mask sums to subtract)."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] != len(v):
        raise ProtocolError(f"hetero_lr: {len(v)} encrypted values for {X.shape[0]} rows")
    re, im = masks(ctx.slots), masks(ctx.slots)  # both parts carry products
    out = v.matvec_strided(X, mask=re + 1j * im)
    F = out.stride
    return out.to_blob(), np.r_[re.reshape(-1, F).sum(axis=0), im.reshape(-1, F).sum(axis=0)][: X.shape[1]]


def packed_sums(ctx: CKKSContext, blob, what: str) -> list[float]:
    """Key holder: decrypt a packed product and return its ``2F`` residue-class sums (real parts, then imaginary)."""
    if not isinstance(blob, CipherBlob):
        raise ProtocolError(f"hetero_lr: {what} must be one encrypted vector")
    v = ctx.vector_from_blob(blob)
    if not v.stride:
        raise ProtocolError(f"hetero_lr: {what} is not a packed product")
    return [float(x) for x in ctx.decrypt_strided(v)]


def unmask(values, rsum) -> np.ndarray:
    """The ``2F`` sums a key holder returned for a packed product minus this party's ``f`` mask sums."""
    F = 2 * stride_for(len(rsum))
    if (not isinstance(values, list) or len(values) != F
            or any(type(v) is not float or not np.isfinite(v) for v in values)):
        raise ProtocolError(f"hetero_lr: expected {F} finite masked sums")
    return np.asarray(values[: len(rsum)], dtype=np.float64) - rsum


def slot_sums(ctx: CKKSContext, blobs, length: int) -> list[float]:
    """Key holder: decrypt each masked vector and sum its ``length`` slots (validation loss)."""
    out = []
    for b in blobs:
        v = ctx.vector_from_blob(b)
        if len(v) != length:
            raise ProtocolError(f"hetero_lr: a masked vector has {len(v)} values, expected {length}")
        out.append(float(np.sum(ctx.decrypt(v))))
    return out


def recv_vector(ctx: CKKSContext, blob, length: int, what: str):
    v = ctx.vector_from_blob(blob)
    if len(v) != length or v.stride:
        raise ProtocolError(f"hetero_lr: {what} has {len(v)} values, expected {length}")
    return v
