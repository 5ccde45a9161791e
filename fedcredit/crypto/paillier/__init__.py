"""Paillier engine: vectorized, CRT-accelerated, phe-compatible.

This is the additively homomorphic scheme every vertical protocol uses.  Keys are
ordinary Paillier keys with ``g = n + 1`` (the same format as ``phe``; convert with
``from_phe``/``to_phe``), ciphertexts are ``c = (1 + m n) r^n mod n^2`` and decrypt
with ``phe`` and vice versa.

Modules
-------
:mod:`.keys` (key generation, :class:`PublicKey`, :class:`PrivateKey`: encryption and
decryption), :mod:`.vector` (:class:`CipherVector`: homomorphic operations,
histograms, re-randomization, wire form), :mod:`.encoding` (:class:`FixedPoint`)
and :mod:`.packing` (:func:`compress`); every public name is re-exported here.

Layers
------
* **Integers** -- :meth:`PublicKey.encrypt_ints`, :meth:`PrivateKey.encrypt_ints`,
  :meth:`PrivateKey.decrypt_ints` (``[0, n)``), :meth:`PrivateKey.decrypt_signed`
  (``(-n/2, n/2]``).
* **Fixed point** -- :class:`FixedPoint` (``frac_bits`` binary digits), and the
  float conveniences :meth:`PublicKey.encrypt`, :meth:`PrivateKey.encrypt`,
  :meth:`PrivateKey.decrypt`.  A :class:`CipherVector` carries its scale.
* **Compression** -- :func:`compress` shifts several summed packed values into one
  ciphertext before decryption ("cipher compression").  The one packing in use,
  SecureBoost's signed ``g * 2^S + h`` per row, and its unpacking live with the
  protocol (:class:`fedcredit.protocols.secureboost.guest.GHCodec`).

Randomness: two obfuscators, and who may use which
--------------------------------------------------
A textbook encryption draws a fresh ``r`` in ``Z_n^*`` and computes ``r^n mod n^2``
(a 2048-bit exponent over a 4096-bit modulus, ~9 ms at 2048 bits).

*Fixed base (fast path).*  Following Damgård, Jurik and Nielsen (*A generalization of
Paillier's public-key system with applications to electronic voting*, IJIS 2010) each
engine draws once, with :mod:`secrets`, ``r0`` in ``Z_n^*`` with Jacobi symbol
``(r0 / n) = -1`` and sets ``h = r0^n mod n^2``; a ciphertext's obfuscator is ``h^a``
with a fresh uniform ``a`` of ``l = max(256, 2 * security_bits)`` bits (256 at 2048 and
3072 bits).  ``h^a`` is a product of precomputed powers ``h^(j 2^(w i))`` (a fixed-base
window table), ``ceil(l / w) - 1`` multiplications instead of ~3,000, and the key owner
also works mod ``p^2`` and ``q^2`` (CRT).  ``h``, the tables and ``a`` never leave the
process; every ciphertext gets its own ``a``.

Assumption, stated precisely.  Against parties who do not know ``p, q``, fixed-base
ciphertexts are IND-CPA under (i) DCR restricted to the subgroup ``<h>`` (``<h>`` is a
random subgroup of small index in the ``n``-th residues: telling its elements from other
``n``-th residues takes characters that need ``p`` and ``q``, and the one public character,
the Jacobi symbol, is ``(-1)^a``, a fair coin per ciphertext because ``(r0 / n) = -1``), and
(ii) a short-exponent assumption in a hidden-order group: *given* ``n, h``, ``h^a`` *with*
``a < 2^l`` *is indistinguishable from* ``h^b`` *with* ``b`` *uniform mod* ``ord(h)``.
DJN use exponents of ``ceil(k/2)`` bits (``k`` = bits of ``n``; 1024 at 2048), for which
Håstad, Schrift and Shamir (JCSS 1996) reduce (ii) to factoring; our ``l = 256`` is far
shorter, and no reduction covers it: the short-exponent results of Koshiba and Kurosawa
(PKC 2004) are for groups of *known prime* order, while ``<h>`` has hidden composite order.
(ii) is therefore an extra assumption, supported only by the best known attack being
generic (Pollard's lambda / baby-step giant-step over the exponent interval:
``2^(l/2) = 2^128`` steps, at or above the 112/128-bit level of the modulus).

Against the *key owner* the fixed base hides nothing: knowing ``p`` it reads the
Legendre symbol ``(c / p) = (r / p)`` of any ciphertext's randomness, and since
``Z_n^*`` is never cyclic some such character is 1 on ``h`` -- so on a re-randomized sum
it shows the product of the summed rows' characters, and a row the owner encrypted with
a marked ``r`` reveals whether it was in the sum (found by the issue-23 review;
``tests/test_paillier_rerandomize.py`` runs the attack).  Hence:

* **Fresh encryptions keep the fixed base** -- the owner's (:meth:`PrivateKey.encrypt_ints`)
  and the public ones (:meth:`PublicKey.encrypt_ints`): a fresh ciphertext's randomness is
  a function of the encrypting engine's own coins ``(r0, a)`` only, independent of any data
  and of every other ciphertext, so the owner learns from it nothing beyond ``m`` (which it
  decrypts anyway) -- at most that two ciphertexts came from the same process, which the
  mTLS sender identity tells it already.  Outsiders face (i) and (ii).
* **Re-randomization by a non-owner** of anything that may reach the key owner
  (:meth:`CipherVector.obfuscate`, hence :meth:`CipherVector.to_blob` of every derived or
  received vector, the pool/Dask worker ``w_public_obfuscate``) uses ``r^n`` with ``r``
  uniform in ``Z_n^*``: the result's randomness is then uniform and independent of how the
  sum was formed, unconditionally, even for the key owner.  After cipher compression these
  are few (SecureBoost: one per 21 bin sums); they cost ~60 fixed-base ones, and after each
  such re-randomization the engine precomputes as many again in the local pool, so in steady
  state they are computed while the party waits for its peers (docs/crypto.md).
* ``obfuscate(for_key_owner=False)`` keeps the fixed base for results whose recipients are
  *not* the key owner (hetero LR's coordinated mode: the guest re-randomizes the batch
  residuals for the hosts under the arbiter's key); :meth:`PrivateKey.obfuscate` (the owner
  re-randomizing its own ciphertexts for others) keeps it too.  Both rest on (i) and (ii).

Unobfuscated arithmetic lives in :mod:`fedcredit.crypto._raw`.

Key sizes: 2048 bits by default, 3072 (or larger) available;
:func:`generate_keypair` refuses anything below 2048 -- small keys for fast logic
tests come only from :func:`fedcredit.testing.small_keypair`.
"""

from __future__ import annotations

from .encoding import DEFAULT_FRAC_BITS, FixedPoint
from .keys import DEFAULT_KEY_BITS, MIN_KEY_BITS, PrivateKey, PublicKey, generate_keypair
from .packing import compress
from .vector import SCHEME, CipherVector, concat

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "DEFAULT_FRAC_BITS",
    "SCHEME",
    "PublicKey",
    "PrivateKey",
    "CipherVector",
    "FixedPoint",
    "generate_keypair",
    "concat",
    "compress",
]
