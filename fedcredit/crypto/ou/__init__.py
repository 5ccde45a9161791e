"""Okamoto-Uchiyama (OU) additively homomorphic encryption, same interface as Paillier.

Okamoto and Uchiyama, *A new public-key cryptosystem as secure as factoring*,
EUROCRYPT 1998.  ``n = p^2 q``, a random ``g`` whose ``g^(p-1) mod p^2`` has order
``p``, ``h = g^n mod n``; a ciphertext is ``c = g^m h^r mod n`` and the key owner
decrypts modulo ``p^2``: ``m = L(c^(p-1) mod p^2) / L(g^(p-1) mod p^2) mod p`` with
``L(x) = (x - 1) / p``.  Ciphertexts live modulo ``n`` (not ``n^2``): half the bytes
of Paillier at the same modulus size, and a homomorphic addition is one product of
2048-bit numbers instead of 4096-bit ones.  The interface mirrors
:mod:`fedcredit.crypto.paillier` (:class:`PublicKey`, :class:`PrivateKey`,
:class:`CipherVector`, blobs) so a protocol can switch schemes with a parameter.

Modules: :mod:`.keys` (key generation, :class:`PublicKey`, :class:`PrivateKey`) and
:mod:`.vector` (:class:`CipherVector`, :func:`concat`, :func:`compress`); every
public name is re-exported here.

Key size
--------
2048 bits by default (``p`` and ``q`` of 683 and 682 bits), 3072 available;
:func:`generate_keypair` refuses less.  Security rests on factoring ``p^2 q``:

* **Number field sieve.**  Its cost depends only on the size of ``n``, not its
  shape; NIST SP 800-57 Part 1 Rev. 5, Table 2 rates a 2048-bit integer-factorization
  modulus at 112 bits of security and 3072 bits at 128.
* **ECM** finds a factor in about ``L_p[1/2, sqrt 2]`` curve operations; for the
  683-bit ``p`` that is about ``2^110`` operations, each a dozen multiplications modulo
  the 2048-bit ``n`` (``> 2^120`` word operations) -- not below the NFS rating.  This
  is the sizing argument Lenstra (*Unbelievable security*, ASIACRYPT 2001) uses for
  moduli with more than two factors; 3072 bits (1024-bit ``p``) gives ``~2^139``.
* **Lattices.**  Boneh, Durfee and Howgrave-Graham (*Factoring N = p^r q for large r*,
  CRYPTO 1999) factor ``p^r q`` in polynomial time only when ``r ~ log p``; for
  ``r = 2`` they must guess about ``log2(p) / 3`` bits of ``p`` (``2^228`` at 2048
  bits), and Coron, Faugere, Renault and Zeitoun (PKC 2016) give nothing better for
  ``p^2 q``.  Attacks on ``p q^2`` schemes that publish extra structure (Castagnos
  et al., ASIACRYPT 2009) do not apply: only ``n``, ``g`` and ``h = g^n`` are public.
* SecretFlow HEU's OU uses the same 2048-bit default (``key_generator.cc``, citing
  Coron, Naccache and Paillier, *Accelerating Okamoto-Uchiyama*, PKC 1999, and
  keylength.com); FATE's OU (``federatedml/secureprotol``) takes the same constants.

Plaintext space and the key-recovery guard
------------------------------------------
Plaintexts live modulo the secret ``p``.  Whoever gets the key owner to decrypt a
ciphertext they made of some ``M >= p`` and learns ``M mod p`` factors ``n``
(``gcd(M - (M mod p), n)``).  So :meth:`PrivateKey.decrypt_ints` releases nothing
unless **every** value of the vector is below ``2^plaintext_bits`` (signed: of
magnitude below it) with ``plaintext_bits = |p| - 65``, i.e. at most ``p / 2^64``;
otherwise it raises :class:`~fedcredit.errors.DecryptionError` and returns no value.
A crafted ``M >= p`` passes only if ``M mod p`` lands in that window, which for a
``p`` the attacker does not know happens with probability ``~2^-63`` per query, and a
refusal fails the job.  Callers can declare a tighter bound (``bound_bits``).
Everything public is sized to the guarded space: :attr:`PublicKey.plaintext_bits`
(618 bits at 2048), :func:`compress` packs ``plaintext_bits // item_bits`` items.
Where a decrypted value (even masked) could return to a party that can craft
ciphertexts, use OU only behind this check -- see docs/crypto.md, "OU".

Randomness
----------
All of it from :mod:`secrets`.  Public encryption uses ``r`` uniform below
``2^(|p| + |q| + 128)``, so ``h^r`` is within ``2^-128`` of uniform in ``<h>`` (whose
order divides ``lcm(p-1, q-1)``): textbook OU, no short-exponent assumption.  The key
owner's encryption uses a short ``r`` of ``owner_r_bits`` (256 at 2048 and 3072 bits,
the rule of Paillier's fixed base): a guessed plaintext is then tested by a kangaroo
search over ``r`` in ``2^128`` steps, and semantic security adds the short-exponent
assumption Paillier's owner path already makes (docs/crypto.md, "OU").  ``g`` and
``h`` are public, so their fixed-base tables are no secret state.  Because ``h = g^n``,
``g``'s component outside the order-``p`` subgroup lies in ``<h>`` and ``g^m h^r``
reveals nothing about ``m`` through characters such as the Jacobi symbol.

Ciphertexts that leave a process after homomorphic operations (:meth:`CipherVector.to_blob`
of a derived vector, :meth:`CipherVector.obfuscate`) are multiplied by ``rho^n`` with a
fresh ``rho`` uniform in ``Z_n^*``: a uniform element of the whole subgroup of
``n``-th powers, which depends on nothing the key owner chose.  What reaches the key
owner is then ``g^M`` times a uniform element of that subgroup -- a function of the
plaintext sum alone, even if the owner crafted ``g``, ``h`` or the summed ciphertexts
to carry a marker in a character outside ``<h>`` (the issue 23 item 5 attack on a
fixed secret base).  It costs one 2048-bit exponentiation per ciphertext, paid after
compression, in ``gmpy2.powmod_base_list`` (GIL-free: one thread per core; each
``obfuscate()`` refills a reserve for the next call in a background thread, and
:meth:`PublicKey.precompute_obfuscators` fills it on demand).
``obfuscate(for_key_owner=False)`` multiplies by ``h^r`` instead (fixed-base table, ~7x
cheaper): uniform over ``<h>``, which contains the randomness of every honestly formed
ciphertext, so it hides everything from recipients other than the key owner and from a
key owner that follows the protocol, but not a marker a deviating owner planted.  The
key owner's own :meth:`PrivateKey.obfuscate` multiplies by ``h^r`` (CRT), like a fresh
encryption.
"""

from __future__ import annotations

from .keys import DEFAULT_KEY_BITS, GUARD_BITS, MIN_KEY_BITS, PrivateKey, PublicKey, generate_keypair
from .vector import SCHEME, CipherVector, compress, concat

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "GUARD_BITS",
    "SCHEME",
    "PublicKey",
    "PrivateKey",
    "CipherVector",
    "generate_keypair",
    "concat",
    "compress",
]
