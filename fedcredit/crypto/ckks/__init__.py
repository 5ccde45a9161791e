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

Rotation keys and the strided matrix product
--------------------------------------------
:meth:`CKKSVector.matvec_strided` computes ``Xᵀ [[v]]`` for a plain matrix ``X``
with ``f`` columns in one ciphertext. Two columns share a slot (real and
imaginary part of the complex plaintext), ``F`` = the smallest power of two
``>= f/2``: slot ``i`` holds ``sum_k v[i+k] (X[i+k, c] + 1j X[i+k, F+c])``,
``c = i mod F`` (``k < F``), so the slots ``i = c (mod F)`` sum to the products
of columns ``c`` (real part) and ``F + c`` (imaginary part). It uses the
baby-step/giant-step diagonal method (Halevi and Shoup, *Algorithms in HElib*,
CRYPTO 2014): ``s - 1`` rotations of ``[[v]]`` by one slot, ``F`` plaintext
products, and ``F/s - 1`` rotations by ``s`` slots, with ``s`` about
``sqrt(F)`` -- 4 rotations and 8 products for up to 16 columns, instead of one
ciphertext per column.
Its result always carries a fresh public-key encryption of a caller-chosen
mask (re-randomized: the party that made ``[[v]]`` cannot divide ciphertext
components to recover ``X``). It needs Galois keys for steps 1 and ``s`` only:
``CKKSContext.generate(rotation_steps=ROTATION_STEPS)`` makes exactly those
(5 keys, ~3.5 MB serialized at 8192, instead of TenSEAL's full set of ~35 MB),
:meth:`CKKSContext.rotation_keys` serializes them and
:meth:`CKKSContext.load_rotation_keys` installs them on a peer's public context.
These paths use SEAL directly (``tenseal.sealapi``): TenSEAL's vector API has no
rotation by an arbitrary step and no products at an exact scale (TenSEAL resets
the scale to ``2^40`` after a rescale although it is ``2^80/q``, a relative error
of ~1e-7; the strided product keeps SEAL's exact scale).

A key holder must not decrypt whatever a peer sends: :meth:`CKKSContext.expected_level` and
:meth:`CKKSContext.check_level` let it check that a received ciphertext has two components
and the chain index and scale the protocol produces at that point (hetero LR's
``_ckks.KeyHolder`` does, and also bounds, floods, rounds and counts what it releases).

A context made by :meth:`CKKSContext.generate` holds the secret key; its
:meth:`~CKKSContext.public` copy does not, and :meth:`~CKKSContext.serialize`
never writes the secret key unless asked (``save_secret_key=True``, for the
owner's own storage only).  Ciphertext blobs carry the fingerprint of the
public key (sha256 of its serialization) and are refused under another key.

Modules: :mod:`.context` (:class:`CKKSContext`: keys, encryption, decryption, the
level checks), :mod:`.vector` (:class:`CKKSVector` and the strided product) and
:mod:`._seal` (SEAL objects to and from bytes); the public names are re-exported here.
"""

from __future__ import annotations

from .context import CKKSContext
from .vector import ROTATION_STEPS, SCHEME, CKKSVector, stride_for

__all__ = ["CKKSContext", "CKKSVector", "SCHEME", "ROTATION_STEPS", "stride_for"]
