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

What the key holder sees, and how decryption is guarded (issue 23, items 6 and 7)
------------------------------------------------------------------------------
Per slot and part (real, imaginary), a sum of at most ``F`` products ``x v`` plus a
uniform mask in ``[-2^30, 2^30]``.  Scores are clipped per party (``|z_p| <=
SCORE_CLIP = 8``) and features in products (``|x| <= FEATURE_CLIP = 8``), so
``|v| <= 8 P + 2`` for ``P`` parties and a slot's value is bounded; the statistical
distance between the masked value and the mask alone is ``|value| / 2^31`` -- e.g.
``2^-20`` per value at ``F = 8`` with three parties, ``2^-7`` per batch (8,192 values),
and no meaningful bound over a whole job (a union bound over 120 batches exceeds 1).
Widening the masks is not an option at scale ``2^40``: the double-precision decoding
error grows with them (about ``2^-50`` of the largest slot) and already dominates the
precision the tolerance tests require.  What the mask hides is therefore stated, not
claimed to be perfect; use Paillier where that is not enough.

Every decryption of a peer's ciphertext goes through :class:`KeyHolder`, which

1. checks the blob against what the protocol sends at that point: the key, one
   ciphertext with two components in NTT form, the chain index and scale of a
   product (``matvec_strided``: one rescale, SEAL's exact scale ``2^80/q``) or of the
   validation sum (one TenSEAL product: scale reset to ``2^40``), a power-of-two stride
   of at most :data:`MAX_STRIDE` that stays the same for a peer through the job, and
   decoded magnitudes within the masks' range -- anything else is a ``ProtocolError``
   before a value is returned;
2. floods and rounds what it returns: each residue-class sum (or loss sum) gets
   uniform noise of one grid cell and is rounded to the grid ``2^-ROUND_BITS`` (or two
   float64 ulps of the value, where coarser: dithered rounding, unbiased).  The noise
   is added to the decoded result, not as an encryption of zero with large noise:
   SEAL's API cannot encrypt with a chosen error distribution, the key holder releases
   only these few sums anyway, and noise on them maps directly onto the precision the
   protocol needs;
3. counts: each peer may request at most ``epochs x batches`` gradient decryptions
   (plus one loss decryption per epoch), derived from the job's plan; more is refused.

What flooding achieves, stated exactly: the released value's distribution moves by at
most ``|e| / 2^-ROUND_BITS`` in statistical distance when the CKKS error ``e`` in it
changes; the lattice error in a residue-class sum is about ``2^-23`` (measured), so about
``2^-7`` per released value.  The >= 40-bit flooding of Li--Micciancio--Schultz--Sorrell
(CRYPTO 2022) needs noise ``2^40`` (or, with their Renyi-divergence analysis, about
``2^20 sqrt(queries)``) times that error: ``>= 2^17`` in each gradient sum at scale
``2^40``, which destroys the gradient; reaching it needs a scale of ``2^80`` or more
(larger parameters).  Against a *malicious* party that crafts a well-formed ciphertext
(right level, scale and layout, chosen components), no flooding short of that helps: the
checks, the magnitude bound and the budget limit what it gets, and the CKKS backend is
semi-honest only (docs/hetero_lr.md).

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

__all__ = ["MASK_BITS", "SCORE_CLIP", "FEATURE_CLIP", "ROUND_BITS", "MAX_STRIDE", "new_context", "context_to_wire",
           "context_from_wire", "masks", "packed_products", "KeyHolder", "decryption_budget", "unmask",
           "recv_vector", "clip_scores"]

#: Per-slot masks are uniform in [-2^MASK_BITS, 2^MASK_BITS].
MASK_BITS = 30
#: Each party's per-row score contribution is clipped to [-SCORE_CLIP, SCORE_CLIP] (sigmoid(8) = 0.9997: the
#: Taylor residual the protocol uses is meaningless beyond), so the values under the masks are bounded.
SCORE_CLIP = 8.0
#: Plain feature values multiplied under encryption are clipped to [-FEATURE_CLIP, FEATURE_CLIP] (standardized
#: features are clipped at 3 by default).
FEATURE_CLIP = 8.0
#: Values a key holder returns are multiples of 2^-ROUND_BITS, after one grid cell of uniform noise.
ROUND_BITS = 16
#: Largest residue-class stride a key holder accepts (up to 2 * 64 = 128 columns per party).
MAX_STRIDE = 64
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


def clip_scores(z) -> np.ndarray:
    """A party's score contribution, clipped to ``[-SCORE_CLIP, SCORE_CLIP]`` per row."""
    return np.clip(np.asarray(z, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)


def packed_products(ctx: CKKSContext, v, X: np.ndarray):
    """``X (b, f)ᵀ [[v]]`` as one masked ciphertext; returns (blob, ``f`` mask sums to subtract).

    ``X`` is clipped to ``[-FEATURE_CLIP, FEATURE_CLIP]`` (the bound the masks' statistical distance is
    stated for); the caller uses the same clipped ``X`` for anything it adds in the clear.
    """
    X = np.clip(np.asarray(X, dtype=np.float64), -FEATURE_CLIP, FEATURE_CLIP)
    if X.shape[0] != len(v):
        raise ProtocolError(f"hetero_lr: {len(v)} encrypted values for {X.shape[0]} rows")
    re, im = masks(ctx.slots), masks(ctx.slots)  # both parts carry products
    out = v.matvec_strided(X, mask=re + 1j * im)
    F = out.stride
    return out.to_blob(), np.r_[re.reshape(-1, F).sum(axis=0), im.reshape(-1, F).sum(axis=0)][: X.shape[1]]


def decryption_budget(plan, params, peers, *, loss_peers=()) -> dict:
    """Decryptions each peer may request in a job: one gradient per batch of every epoch, plus one validation
    loss per epoch for ``loss_peers`` (when there is a validation set)."""
    grads = len(plan.batches(0)) * int(params.max_epochs)
    loss = int(params.max_epochs) if plan.valid.size else 0
    return {p: grads + (loss if p in loss_peers else 0) for p in peers}


class KeyHolder:
    """The CKKS key holder's decryptions for hetero LR: checked, flooded, rounded and counted.

    Parameters
    ----------
    ctx : CKKSContext
        The private context.
    budget : dict of str to int
        Decryptions each peer may request in this job (:func:`decryption_budget`).

    Notes
    -----
    See the module docstring for what each step protects against and what it does not.
    """

    def __init__(self, ctx: CKKSContext, budget: dict):
        self.ctx = ctx
        self.left = {p: int(n) for p, n in budget.items()}
        self._strides: dict = {}
        self._product = ctx.expected_level(1, exact_scale=True)  # matvec_strided: one rescale, exact scale
        self._loss = ctx.expected_level(1)  # TenSEAL mul_plain: one rescale, scale reset

    def _spend(self, peer: str, what: str) -> None:
        if self.left.get(peer, 0) <= 0:
            raise ProtocolError(f"hetero_lr: {what}: {peer!r} asked for more decryptions than the job's plan allows")
        self.left[peer] -= 1

    @staticmethod
    def _release(values: np.ndarray) -> list[float]:
        """Dithered rounding: one grid cell of uniform noise (``secrets``), then round to the grid.

        The cell is ``2^-ROUND_BITS``, or two float64 ulps of the value where that is coarser (masked sums
        reach ~2^36, where an ulp is 2^-16): noise below an ulp would vanish in the addition.
        """
        values = np.asarray(values, dtype=np.float64)
        _, e = np.frexp(np.abs(values))
        cell = np.ldexp(1.0, np.maximum(-ROUND_BITS, e - 52))  # a power of two >= 2 ulps
        u = np.frombuffer(secrets.token_bytes(8 * values.size), dtype=np.uint64) >> np.uint64(11)
        noise = (u.astype(np.float64) * 2.0**-53 - 0.5) * cell
        return [float(x) for x in np.round((values + noise) / cell) * cell]

    def packed_sums(self, peer: str, blob, what: str) -> list[float]:
        """Decrypt a peer's packed product and return its ``2F`` residue-class sums (real parts, then imaginary).

        Raises
        ------
        ProtocolError
            If the blob is not exactly what ``matvec_strided`` produces (level, scale, components, stride), its
            stride differs from the peer's earlier ones, a sum is beyond the masks' range, or the peer's budget
            is spent.
        """
        if not isinstance(blob, CipherBlob):
            raise ProtocolError(f"hetero_lr: {what} must be one encrypted vector")
        v = self.ctx.vector_from_blob(blob)
        if not v.stride:
            raise ProtocolError(f"hetero_lr: {what} is not a packed product")
        if v.stride > MAX_STRIDE or self._strides.setdefault(peer, v.stride) != v.stride:
            raise ProtocolError(f"hetero_lr: {what} has a stride the protocol does not use")
        if not self.ctx.check_level(v, self._product):
            raise ProtocolError(f"hetero_lr: {what} is not at the level and scale of a packed product")
        self._spend(peer, what)
        sums = self.ctx.decrypt_strided(v)
        bound = 2.0 ** (MASK_BITS + 2) * (self.ctx.slots // v.stride)
        if not (np.all(np.isfinite(sums)) and np.abs(sums).max() <= bound):
            raise ProtocolError(f"hetero_lr: {what} decrypts to values beyond any masked product")
        return self._release(sums)

    def slot_sum(self, peer: str, blob, length: int, what: str) -> float:
        """Decrypt a peer's masked validation vector and return the sum of its ``length`` slots (checked,
        flooded, rounded and counted as :meth:`packed_sums`)."""
        if not isinstance(blob, CipherBlob):
            raise ProtocolError(f"hetero_lr: {what} must be one encrypted vector")
        v = self.ctx.vector_from_blob(blob)
        if len(v) != length or v.stride:
            raise ProtocolError(f"hetero_lr: {what} has {len(v)} values, expected {length}")
        if not self.ctx.check_level(v, self._loss):
            raise ProtocolError(f"hetero_lr: {what} is not at the level and scale of the masked loss")
        self._spend(peer, what)
        total = float(np.sum(self.ctx.decrypt(v)))
        if not (np.isfinite(total) and abs(total) <= 2.0 ** (MASK_BITS + 8) * max(length, 1)):
            raise ProtocolError(f"hetero_lr: {what} decrypts to a value beyond any masked loss")
        return self._release(np.array([total]))[0]


def unmask(values, rsum) -> np.ndarray:
    """The ``2F`` sums a key holder returned for a packed product minus this party's ``f`` mask sums."""
    F = 2 * stride_for(len(rsum))
    if (not isinstance(values, list) or len(values) != F
            or any(type(v) is not float or not np.isfinite(v) for v in values)):
        raise ProtocolError(f"hetero_lr: expected {F} finite masked sums")
    return np.asarray(values[: len(rsum)], dtype=np.float64) - rsum


def recv_vector(ctx: CKKSContext, blob, length: int, what: str, *, products: int = 0):
    """A peer's vector of ``length`` values, checked to be at the level of a fresh encryption (``products=0``)
    or after one TenSEAL plaintext product (``products=1``: cross terms), with two components."""
    v = ctx.vector_from_blob(blob)
    if len(v) != length or v.stride:
        raise ProtocolError(f"hetero_lr: {what} has {len(v)} values, expected {length}")
    if not ctx.check_level(v, ctx.expected_level(products)):
        raise ProtocolError(f"hetero_lr: {what} is not at the level and scale the protocol sends it")
    return v
