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
All of it from :mod:`secrets`.  Encryption uses ``r`` uniform below
``2^(|p| + |q| + 128)``, so ``h^r`` is within ``2^-128`` of uniform in ``<h>`` (whose
order divides ``lcm(p-1, q-1)``): textbook OU, no short-exponent assumption.  ``g`` and
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

import hashlib
import os
import secrets
import threading
from collections import deque
from collections.abc import Iterable

import gmpy2
import numpy as np
from gmpy2 import mpz

from ..errors import ConfigError, DataError, DecryptionError
from . import _ou_heu
from . import parallel as _par
from . import pool as _pool
from ._ou_raw import OwnerEngine, PublicEngine, bucket_sums, horner_pack, product, random_units_nth_power
from .blob import CipherBlob
from .paillier.encoding import DEFAULT_FRAC_BITS, FixedPoint

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

#: Default modulus size of ``n = p^2 q`` (112-bit security; see the module docstring).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted outside tests.
MIN_KEY_BITS = 2048
#: Bits between the largest plaintext the key owner releases and ``p``.
GUARD_BITS = 64
SCHEME = "ou"
# Background refill of rho^n re-randomizers (PublicKey._refill_obfuscators): key sizes and reserve bound.
_REFILL_MIN_BITS = 2048
_REFILL_MAX = 4096

_MPZ = type(mpz(0))
# Moduli of small keys made in this process by _small_keypair (tests only; never a peer's choice).
_TEST_MODULI: set[int] = set()


# ====================================================================== keys
def _p_bits(bits: int) -> int:
    return (bits + 2) // 3


def _random_prime(bits: int):
    """A random prime of exactly ``bits`` bits with the top two bits set (``secrets``)."""
    while True:
        cand = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
        p = gmpy2.next_prime(cand)
        if p.bit_length() == bits and gmpy2.is_prime(p, 50):
            return p


def _generate(bits: int):
    pb = _p_bits(bits)
    qb = bits - 2 * pb
    while True:
        p, q = _random_prime(pb), _random_prime(qb)
        n = p * p * q
        # gcd conditions: n-th powering is a bijection on the order-(p-1) and (q-1) parts
        if p == q or n.bit_length() != bits or gmpy2.gcd(p, q - 1) != 1 or gmpy2.gcd(q, p - 1) != 1:
            continue
        break
    p2 = p * p
    while True:
        g = mpz(secrets.randbelow(int(n) - 3) + 2)
        if gmpy2.gcd(g, n) == 1 and gmpy2.powmod(g % p2, p - 1, p2) != 1:
            break
    h = gmpy2.powmod(g, n, n)
    if bits < MIN_KEY_BITS:  # only reachable through _small_keypair
        _TEST_MODULI.add(int(n))
    pk = PublicKey(int(n), int(g), int(h))
    return pk, PrivateKey(pk, int(p), int(q))


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple["PublicKey", "PrivateKey"]:
    """Generate an OU key pair.

    Parameters
    ----------
    bits : int, default=2048
        Size of ``n = p^2 q``: 2048 (112-bit security) or more, e.g. 3072 (128-bit).

    Raises
    ------
    ConfigError
        If ``bits`` is not an int or below 2048.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigError(f"The 'bits' parameter of generate_keypair must be an int. Got {bits!r} instead.")
    if int(bits) < MIN_KEY_BITS:
        raise ConfigError(
            f"The 'bits' parameter of generate_keypair must be an int in [{MIN_KEY_BITS}, inf). Got {bits} instead."
        )
    return _generate(int(bits))


def _small_keypair(bits: int) -> tuple["PublicKey", "PrivateKey"]:
    """An insecure key for logic tests (to move to :mod:`fedcredit.testing` at integration)."""
    if bits < 384:
        raise ValueError("OU test keys need at least 384 bits (plaintext space above the guard)")
    return _generate(int(bits))


class PublicKey:
    """An OU public key ``(n, g, h)`` with ``h = g^n mod n``.

    Attributes
    ----------
    n, g, h : int
    bits : int
        Bit length of ``n``.
    p_bits : int
        Bit length of the secret ``p`` (``ceil(bits / 3)``; public by construction).
    plaintext_bits : int
        Plaintexts (and every homomorphic result that will be decrypted) must have
        magnitude below ``2^plaintext_bits = 2^(p_bits - 1 - GUARD_BITS)``.
    width : int
        Bytes of one serialized ciphertext (bytes of ``n``).
    fingerprint : bytes
        ``sha256`` over the scheme name, ``n``, ``g`` and ``h``.
    """

    def __init__(self, n: int, g: int, h: int):
        for v in (n, g, h):
            if isinstance(v, bool) or not isinstance(v, (int, _MPZ, np.integer)):
                raise ConfigError("an OU public key is three ints (n, g, h)")
        n, g, h = int(n), int(g), int(h)
        if n < 3 or n % 2 == 0 or not 1 < g < n or not 1 < h < n:
            raise ConfigError("not an OU public key")
        bits = n.bit_length()
        if bits < MIN_KEY_BITS and n not in _TEST_MODULI:
            raise ConfigError(f"OU keys must be at least {MIN_KEY_BITS} bits; got {bits}.")
        if gmpy2.gcd(g, n) != 1 or gmpy2.powmod(g, n, n) != h:
            raise ConfigError("not an OU public key (h != g^n mod n)")
        self.n, self.g, self.h = n, g, h
        self.bits = bits
        self.p_bits = _p_bits(bits)
        self.plaintext_bits = self.p_bits - 1 - GUARD_BITS
        self.r_bits = bits - self.p_bits + 128  # |p| + |q| + 128 >= log2 lcm(p-1, q-1) + 128
        self.width = (bits + 7) // 8
        self._bytes = tuple(v.to_bytes(self.width, "big") for v in (n, g, h))
        self.fingerprint = hashlib.sha256(SCHEME.encode() + b"".join(self._bytes)).digest()
        self._mn = mpz(n)
        self._engine: PublicEngine | None = None
        self._lock = threading.Lock()
        self._obf_pool: deque = deque()
        self._obf_pid = os.getpid()
        self._recent: list[int] = []
        self._refill_thread: threading.Thread | None = None

    def __eq__(self, other) -> bool:
        return isinstance(other, PublicKey) and (other.n, other.g, other.h) == (self.n, self.g, self.h)

    def __hash__(self) -> int:
        return hash((SCHEME, self.n, self.g))

    def __repr__(self) -> str:
        return f"ou.PublicKey(bits={self.bits}, fingerprint={self.fingerprint[:8].hex()})"

    def to_wire(self) -> dict:
        """``{"scheme": "ou", "n": bytes, "g": bytes, "h": bytes}``."""
        n, g, h = self._bytes
        return {"scheme": SCHEME, "n": n, "g": g, "h": h}

    @classmethod
    def from_wire(cls, d: dict) -> "PublicKey":
        """Inverse of :meth:`to_wire`; refuses malformed or too-small keys."""
        if not isinstance(d, dict) or d.get("scheme") != SCHEME or not all(isinstance(d.get(k), bytes) for k in "ngh"):
            raise ConfigError("not an OU public key message")
        return cls(*(int.from_bytes(d[k], "big") for k in "ngh"))

    def _get_engine(self) -> PublicEngine:
        with self._lock:
            if self._engine is None:
                self._engine = PublicEngine(self.n, self.g, self.h, self.plaintext_bits, self.r_bits)
            return self._engine

    def precompute_obfuscators(self, count: int) -> None:
        """Compute ``count`` re-randomizers ``rho^n`` now, for later :meth:`CipherVector.obfuscate` calls.

        They do not depend on any data, so a party can make them ahead of time, e.g. in a
        thread while it waits for a peer (the exponentiations release the GIL).  Each value
        is used once and then dropped.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ConfigError(f"The 'count' parameter of precompute_obfuscators must be an int >= 0. Got {count!r} instead.")
        self._check_fork()
        self._obf_pool.extend(random_units_nth_power(self._mn, int(count)))

    def _refill_obfuscators(self, count: int) -> None:
        """After a re-randomization of ``count`` values, compute the next ones in a background thread.

        Up to the sum of the last three counts (at most 4,096), less what is in reserve -- the
        Paillier twin's policy: protocols re-randomize similar numbers each round and then wait
        or compute histograms, and ``powmod_base_list`` releases the GIL, so the thread runs on
        another core meanwhile.  Production-size keys only; values appear in chunks of 64.
        """
        self._check_fork()
        with self._lock:
            self._recent = (self._recent + [int(count)])[-3:]
            want = min(_REFILL_MAX, sum(self._recent)) - len(self._obf_pool)
            busy = self._refill_thread is not None and self._refill_thread.is_alive()
            if want < 1 or busy or self.bits < _REFILL_MIN_BITS:
                return
            t = threading.Thread(target=self._refill_worker, args=(want,), name="ou-obfuscators", daemon=True)
            self._refill_thread = t
        t.start()

    def _refill_worker(self, want: int) -> None:
        pool = self._obf_pool  # a fork replaces the reserve; this thread then fills an orphan
        try:
            while want > 0:
                chunk = min(64, want)
                pool.extend(random_units_nth_power(self._mn, chunk, parallel=False))
                want -= chunk
        except Exception:  # the next obfuscate computes what it needs itself
            pass

    def _check_fork(self) -> None:
        """A forked child must never reuse its parent's reserved re-randomizers: drop them."""
        if self._obf_pid != os.getpid():
            with self._lock:
                if self._obf_pid != os.getpid():
                    self._obf_pool = deque()
                    self._recent, self._refill_thread = [], None
                    self._obf_pid = os.getpid()

    def _take_obfuscators(self, count: int, parallel: bool | None = None) -> list:
        self._check_fork()
        out = []
        pool = self._obf_pool
        try:
            while len(out) < count:
                out.append(pool.popleft())  # atomic: a value never goes to two callers
        except IndexError:
            pass
        return out + random_units_nth_power(self._mn, count - len(out), parallel)

    def _check_ints(self, ints) -> list:
        """Plaintext ints -> list of Python/mpz ints of magnitude below ``2^plaintext_bits``."""
        bound = 1 << self.plaintext_bits
        if isinstance(ints, np.ndarray) and ints.dtype.kind in "iu":
            vals = ints.ravel().tolist()
        else:
            vals = []
            for v in ints:
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, _MPZ, np.integer)):
                    raise ConfigError(f"plaintexts must be ints, got {type(v).__name__}")
                vals.append(int(v))
        if vals and (max(vals) >= bound or min(vals) <= -bound):
            raise DataError(f"plaintext outside (-2^{self.plaintext_bits}, 2^{self.plaintext_bits})")
        return vals

    def encrypt_ints(self, ints, *, parallel: bool | None = None) -> "CipherVector":
        """Encrypt integers with the public key only (anyone may do this).

        Parameters
        ----------
        ints : sequence of int or ndarray of int, shape (k,)
            Values of magnitude below ``2^plaintext_bits``.
        parallel : bool or None
            Accepted for interface parity with Paillier; OU runs in-process for now.

        Returns
        -------
        CipherVector
            Of length ``k``, ``frac_bits=0``.
        """
        cs = self._get_engine().encrypt(self._check_ints(ints))
        return CipherVector._make(self, _obj_array(cs), 0, fresh=True)

    def encrypt(self, x, *, frac_bits: int = DEFAULT_FRAC_BITS, parallel: bool | None = None) -> "CipherVector":
        """Encrypt floats in fixed point (``round(x * 2^frac_bits)``)."""
        cv = self.encrypt_ints(FixedPoint(frac_bits=frac_bits).encode(x))
        return CipherVector._make(self, cv._c, frac_bits, fresh=True)

    def encrypt_zeros(self, count: int) -> "CipherVector":
        """``count`` encryptions of 0 without randomness (the value 1); re-randomized before export."""
        return CipherVector._make(self, _obj_array([mpz(1)] * int(count)), 0, fresh=False)

    def vector_from_raw(self, cs, *, frac_bits: int = 0) -> "CipherVector":
        """A vector from ciphertext integers in ``(0, n)`` computed elsewhere (hazmat; marked derived)."""
        arr = _obj_array([c if type(c) is _MPZ else mpz(int(c)) for c in cs])
        n = self._mn
        if int(frac_bits) < 0 or any(not 0 < c < n for c in arr):
            raise ConfigError("raw ciphertexts must be ints in (0, n) with frac_bits >= 0")
        return CipherVector._make(self, arr, int(frac_bits), fresh=False)

    def vector_from_blob(self, blob: CipherBlob) -> "CipherVector":
        """Rebuild a :class:`CipherVector` from a :class:`CipherBlob`.

        Raises
        ------
        DecryptionError
            Opaquely, if the blob is for another key or scheme, has the wrong width or
            length, or holds a value that is not a unit below ``n``.
        """
        if not isinstance(blob, CipherBlob):
            raise DecryptionError()
        w = self.width
        if (
            blob.scheme != SCHEME
            or not secrets.compare_digest(bytes(blob.key_fingerprint), self.fingerprint)
            or blob.width != w
            or blob.count < 0
            or len(blob.data) != w * blob.count
        ):
            raise DecryptionError()
        frac_bits = blob.meta.get("frac_bits", 0)
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 0 <= frac_bits <= self.plaintext_bits:
            raise DecryptionError()
        fb, mv, n = mpz.from_bytes, memoryview(blob.data), self._mn
        cs = [fb(mv[i : i + w], "big") for i in range(0, len(mv), w)]
        for c in cs:
            if not 0 < c < n or gmpy2.gcd(c, n) != 1:
                raise DecryptionError()
        return CipherVector._make(self, _obj_array(cs), frac_bits, fresh=False)


class PrivateKey:
    """An OU private key (``p``, ``q``).  No wire form; cannot be pickled.

    Parameters
    ----------
    public_key : PublicKey
    p, q : int
        ``public_key.n == p * p * q``.
    """

    def __init__(self, public_key: PublicKey, p: int, q: int):
        p, q = int(p), int(q)
        if not isinstance(public_key, PublicKey) or p < 3 or q < 3 or p * p * q != public_key.n:
            raise ConfigError("p^2 q does not match the public key")
        if p.bit_length() != public_key.p_bits or gmpy2.powmod(public_key.g % (p * p), p - 1, p * p) == 1:
            raise ConfigError("not an OU key pair")
        self.public_key = public_key
        self._p, self._q = p, q
        self._engine: OwnerEngine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ou.PrivateKey(bits={self.public_key.bits}, fingerprint={self.public_key.fingerprint[:8].hex()})"

    def __reduce__(self):
        raise TypeError("OU private keys cannot be pickled or serialized")

    def __eq__(self, other) -> bool:
        return isinstance(other, PrivateKey) and (other._p, other._q) == (self._p, self._q)

    def __hash__(self) -> int:
        return hash(("ou-sk", self.public_key.n))

    def _get_engine(self) -> OwnerEngine:
        with self._lock:
            if self._engine is None:
                pk = self.public_key
                self._engine = OwnerEngine(self._p, self._q, pk.g, pk.h, pk.plaintext_bits, pk.r_bits)
            return self._engine

    # -------------------------------------------------- encryption (key owner)
    def encrypt_ints(self, ints, *, parallel: bool | None = None) -> "CipherVector":
        """Encrypt integers as the key owner (CRT over ``p^2`` and ``q``; same distribution as public).

        ``parallel``: split over the party's process pool (None: from ``PARALLEL_MIN`` values with
        2048-bit or larger keys), like Paillier; the workers rebuild the CRT engine from key bytes
        that stay in the party's own pool (:mod:`fedcredit.crypto.pool`).
        """
        pk = self.public_key
        ms = pk._check_ints(ints)
        if _par.use_parallel(len(ms), parallel, pk.bits):
            kb = _pool.KeyBytes
            w = pk.width
            key = (kb(int(self._p).to_bytes(w, "big")), kb(int(self._q).to_bytes(w, "big")), pk._bytes[1],
                   pk._bytes[2], pk.plaintext_bits, pk.r_bits)
            parts = _par.split(len(ms), _par.pool_size())
            res = _par.parallel_map(_pool.w_ou_owner_encrypt, [(*key, ms[lo:hi], w) for lo, hi in parts])
            fb, data = mpz.from_bytes, b"".join(res)
            cs = [fb(data[i : i + w], "big") for i in range(0, len(data), w)]
        else:
            cs = self._get_engine().encrypt(ms)
        return CipherVector._make(pk, _obj_array(cs), 0, fresh=True)

    def encrypt(self, x, *, frac_bits: int = DEFAULT_FRAC_BITS, parallel: bool | None = None) -> "CipherVector":
        """Encrypt floats in fixed point as the key owner."""
        cv = self.encrypt_ints(FixedPoint(frac_bits=frac_bits).encode(x))
        return CipherVector._make(self.public_key, cv._c, frac_bits, fresh=True)

    def obfuscate(self, cv: "CipherVector", *, parallel: bool | None = None) -> "CipherVector":
        """Re-randomize ``cv`` with fresh ``h^r`` (CRT), for vectors the owner itself sends on."""
        self._check_vector(cv)
        cs = self._get_engine().obfuscate(list(cv._c))
        return CipherVector._make(self.public_key, _obj_array(cs), cv.frac_bits, fresh=True)

    # -------------------------------------------------- decryption
    def _check_vector(self, cv) -> None:
        if not isinstance(cv, CipherVector) or cv.public_key != self.public_key:
            raise DecryptionError()

    def _decrypt_unchecked(self, cv: "CipherVector") -> list[int]:
        """Residues ``m mod p`` with no plaintext guard (hazmat: never release these)."""
        self._check_vector(cv)
        n = self.public_key._mn
        for c in cv._c:
            if not 0 < c < n or gmpy2.gcd(c, n) != 1:
                raise DecryptionError()
        try:
            return [int(m) for m in self._get_engine().decrypt(cv._c)]
        except Exception:
            raise DecryptionError() from None

    def _bound(self, bound_bits) -> int:
        pt = self.public_key.plaintext_bits
        if bound_bits is None:
            return 1 << pt
        if isinstance(bound_bits, bool) or not isinstance(bound_bits, (int, np.integer)) or not 0 <= bound_bits <= pt:
            raise ConfigError(f"The 'bound_bits' parameter of decrypt must be an int in [0, {pt}]. Got {bound_bits!r} instead.")
        return 1 << int(bound_bits)

    def decrypt_ints(self, cv: "CipherVector", *, bound_bits: int | None = None, parallel: bool | None = None) -> list[int]:
        """Decrypt to integers in ``[0, 2^bound_bits)``, all or nothing.

        Parameters
        ----------
        cv : CipherVector
        bound_bits : int, optional
            Declared bound (default and maximum: ``public_key.plaintext_bits``).

        Raises
        ------
        DecryptionError
            Opaquely, if the vector is under another key, a ciphertext is invalid, or
            **any** value is at or above the bound (the key-recovery guard: nothing
            is returned, so a crafted plaintext ``>= p`` reveals no multiple of ``p``).
        """
        bound = self._bound(bound_bits)
        ms = self._decrypt_unchecked(cv)
        if any(m >= bound for m in ms):
            raise DecryptionError()
        return ms

    def decrypt_signed(self, cv: "CipherVector", *, bound_bits: int | None = None, parallel: bool | None = None) -> list[int]:
        """Decrypt to signed integers in ``(-2^bound_bits, 2^bound_bits)``, all or nothing (see :meth:`decrypt_ints`)."""
        bound = self._bound(bound_bits)
        p = self._p
        out = []
        for m in self._decrypt_unchecked(cv):
            if m < bound:
                out.append(m)
            elif m > p - bound:
                out.append(m - p)
            else:
                raise DecryptionError()
        return out

    def decrypt(self, cv: "CipherVector", *, bound_bits: int | None = None, parallel: bool | None = None) -> np.ndarray:
        """Decrypt a fixed-point vector to ``float64`` using its ``frac_bits`` (signed, guarded)."""
        vals = self.decrypt_signed(cv, bound_bits=bound_bits)
        try:
            return FixedPoint(frac_bits=cv.frac_bits).decode(vals)
        except (OverflowError, ValueError):
            raise DecryptionError() from None


# ====================================================================== vectors
def _obj_array(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


class CipherVector:
    """An immutable vector of OU ciphertexts under one public key (see the Paillier twin).

    Attributes
    ----------
    public_key : PublicKey
    frac_bits : int
        Fixed-point scale of the plaintexts (0 for integers).
    """

    __slots__ = ("public_key", "frac_bits", "_c", "_fresh", "_blob")

    def __init__(self, *args, **kwargs):
        raise TypeError("create CipherVectors with PublicKey/PrivateKey.encrypt* or PublicKey.vector_from_blob")

    @classmethod
    def _make(cls, pk: PublicKey, cs: np.ndarray, frac_bits: int, *, fresh: bool) -> "CipherVector":
        self = object.__new__(cls)
        self.public_key = pk
        self._c = cs
        self.frac_bits = int(frac_bits)
        self._fresh = fresh
        self._blob = None
        return self

    def _derived(self, cs, frac_bits=None) -> "CipherVector":
        return CipherVector._make(self.public_key, cs, self.frac_bits if frac_bits is None else frac_bits, fresh=False)

    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, idx) -> "CipherVector":
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for CipherVector of length {len(self)}")
            i %= len(self)
            sel = self._c[i : i + 1]
        else:
            sel = self._c[idx]
        return CipherVector._make(self.public_key, np.asarray(sel, dtype=object).reshape(-1), self.frac_bits, fresh=self._fresh)

    def __repr__(self) -> str:
        return f"ou.CipherVector(len={len(self)}, frac_bits={self.frac_bits}, key={self.public_key.fingerprint[:4].hex()})"

    def __iter__(self):
        raise TypeError("iterate over a CipherVector by indexing (cv[i]) - it has no scalar element type")

    def ciphertexts(self) -> list[int]:
        """The raw ciphertext integers (hazmat: not re-randomized)."""
        return [int(c) for c in self._c]

    def raw_ints(self) -> np.ndarray:
        """The ciphertexts as a read-only object array of ``mpz`` (hazmat)."""
        v = self._c.view()
        v.flags.writeable = False
        return v

    # -------------------------------------------------- helpers
    def _check_same_key(self, other: "CipherVector") -> None:
        if not isinstance(other, CipherVector):
            raise TypeError(f"expected an OU CipherVector, got {type(other).__name__}")
        if other.public_key != self.public_key:
            raise ConfigError("CipherVectors under different public keys")

    @staticmethod
    def _broadcast(a, b):
        if len(a) == len(b) or len(a) == 1 or len(b) == 1:
            return a, b
        raise ConfigError(f"length mismatch: {len(a)} vs {len(b)}")

    def _aligned(self, other: "CipherVector"):
        a, b = self, other
        if a.frac_bits < b.frac_bits:
            a = a._rescaled(b.frac_bits)
        elif b.frac_bits < a.frac_bits:
            b = b._rescaled(a.frac_bits)
        return a, b

    def _rescaled(self, frac_bits: int) -> "CipherVector":
        v = self.mul_plain(1 << (frac_bits - self.frac_bits))
        return v._derived(v._c, frac_bits)

    def _plain(self, values, frac_bits: int) -> list:
        """Plaintext operand -> checked signed ints (floats fixed-point encoded at ``frac_bits``)."""
        if isinstance(values, (int, np.integer, float, np.floating, _MPZ)) and not isinstance(values, bool):
            values = [values]
        arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
        if arr.dtype == object and arr.size and all(isinstance(v, (float, np.floating)) for v in arr):
            arr = arr.astype(np.float64)
        if arr.dtype.kind == "f":
            return self.public_key._check_ints(FixedPoint(frac_bits=frac_bits).encode(arr))
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        return self.public_key._check_ints(arr if arr.dtype.kind in "iu" else arr.tolist())

    # -------------------------------------------------- homomorphic ops
    def __add__(self, other: "CipherVector") -> "CipherVector":
        """Elementwise ciphertext addition (``E(a) E(b) mod n``)."""
        if not isinstance(other, CipherVector):
            return NotImplemented
        self._check_same_key(other)
        a, b = self._aligned(other)
        x, y = self._broadcast(a._c, b._c)
        n = self.public_key._mn
        if len(x) == len(y):
            return a._derived(_obj_array([u * v % n for u, v in zip(x, y)]))
        return a._derived(x * y % n)

    def __neg__(self) -> "CipherVector":
        n = self.public_key._mn
        return self._derived(_obj_array([gmpy2.invert(c, n) for c in self._c]))

    def __sub__(self, other: "CipherVector") -> "CipherVector":
        """Elementwise difference: ``E(a) E(b)^-1``."""
        if not isinstance(other, CipherVector):
            return NotImplemented
        self._check_same_key(other)
        return self + (-other)

    def add_plain(self, values) -> "CipherVector":
        """Add plaintexts (ints at this vector's scale, floats encoded at its ``frac_bits``)."""
        ms = self._plain(values, self.frac_bits)
        pk = self.public_key
        n, tg = pk._mn, pk._get_engine().tg
        gm = _obj_array([tg.pow(m) if m >= 0 else gmpy2.invert(tg.pow(-m), n) for m in ms])
        x, y = self._broadcast(self._c, gm)
        return self._derived(x * y % n)

    def mul_plain(self, values, *, frac_bits: int | None = None) -> "CipherVector":
        """Multiply by plaintexts (scalar or same length); negative ints allowed.

        Floats are encoded with ``frac_bits`` (default :data:`DEFAULT_FRAC_BITS`) and the
        result's scale is the sum of both scales.
        """
        is_float = isinstance(values, (float, np.floating)) or (
            isinstance(values, np.ndarray) and values.dtype.kind == "f"
        ) or (isinstance(values, (list, tuple)) and values and all(isinstance(v, float) for v in values))
        fb = (DEFAULT_FRAC_BITS if frac_bits is None else int(frac_bits)) if is_float else 0
        ks = self._plain(values, fb)
        n = self.public_key._mn
        powmod, inv = gmpy2.powmod, gmpy2.invert

        def one(c, k):
            return powmod(c, k, n) if k >= 0 else powmod(inv(c, n), -k, n)

        if len(ks) == 1:
            out = [one(c, ks[0]) for c in self._c]
        elif len(ks) == len(self):
            out = [one(c, k) for c, k in zip(self._c, ks)]
        else:
            raise ConfigError(f"length mismatch: {len(self)} vs {len(ks)}")
        return self._derived(_obj_array(out), self.frac_bits + fb)

    def dot(self, values, *, frac_bits: int | None = None) -> "CipherVector":
        """``sum_i E(x_i) w_i`` as a length-1 vector."""
        return self.mul_plain(values, frac_bits=frac_bits).sum()

    def sum(self) -> "CipherVector":
        """Sum of all elements as a length-1 vector (``E(0) = 1`` when empty)."""
        return self._derived(_obj_array([product(self._c, self.public_key._mn)]))

    def group_sum(self, group_ids, n_groups: int) -> "CipherVector":
        """Sum per group (length ``n_groups``; an empty group holds 1, re-randomized before export)."""
        gid = np.asarray(group_ids)
        if gid.ndim != 1:
            raise ConfigError(f"group ids must be 1-D, got shape {gid.shape}")
        return self.histogram(gid.reshape(-1, 1), n_groups)

    def histogram(self, bins, n_bins: int, *, kernel: str = "gmpy2", parallel: bool | None = None) -> "CipherVector":
        """Per-feature bin sums over this vector's rows (the host's encrypted histogram).

        Parameters
        ----------
        bins : ndarray of int (e.g. uint8), shape (len(self), n_features)
            Bin code of each row for each feature, in ``[0, n_bins)``.
        n_bins : int
        kernel : {"gmpy2", "heu"}, default="gmpy2"
            ``"gmpy2"``: the pure kernel (always available).  ``"heu"``: SecretFlow HEU's
            bucket sum through :mod:`fedcredit.crypto._ou_heu` (``pip install
            fedcredit[heu]``; ConfigError if it is not importable, fails its self-check or
            fails).  Both give identical ciphertexts; HEU was 1.7x faster on a quiet core
            and no faster under heavy load (benchmarks/README.md, "OU backend").
        parallel : bool or None
            ``"gmpy2"`` kernel: split the rows over the party's process pool (None: when
            rows x features >= ``PARALLEL_MIN`` with 2048-bit or larger keys), as Paillier does.

        Returns
        -------
        CipherVector
            Length ``n_features * n_bins``, feature-major.
        """
        b = np.asarray(bins)
        if b.ndim != 2:
            raise ConfigError(f"bins must be 2-D (rows, features), got shape {b.shape}")
        if b.dtype.kind not in "iu":
            raise ConfigError(f"bins must be integers, got dtype {b.dtype}")
        if b.shape[0] != len(self):
            raise ConfigError(f"bins have {b.shape[0]} rows, vector {len(self)}")
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ConfigError(f"The 'n_bins' parameter of histogram must be an int >= 1. Got {n_bins!r} instead.")
        if b.size and (b.min() < 0 or b.max() >= n_bins):
            raise ConfigError(f"bin ids must be in [0, {n_bins})")
        if kernel not in ("gmpy2", "heu"):
            raise ConfigError(f"The 'kernel' parameter of histogram must be 'gmpy2' or 'heu'. Got {kernel!r} instead.")
        cs = self._c.tolist()
        if kernel == "heu" and len(cs):
            pk = self.public_key
            bridge = _ou_heu.bridge_for(pk.n, pk.g, pk.h, pk.plaintext_bits)
            if bridge is None:
                raise ConfigError("kernel='heu' needs sf-heu (pip install fedcredit[heu]) and a passing self-check")
            try:
                out = bridge.bucket_sums(cs, b, int(n_bins))
            except Exception:
                raise ConfigError("the HEU bucket sum failed; use kernel='gmpy2'") from None
        elif _par.use_parallel(b.size, parallel, self.public_key.bits) and len(cs) >= 2:
            # rows split over the party's process pool; the partial sums multiply together
            pk = self.public_key
            w, n = pk.width, pk._mn
            parts = _par.split(len(cs), _par.pool_size())
            res = _par.parallel_map(_pool.w_ou_histogram, [
                (pk._bytes[0], b"".join(c.to_bytes(w, "big") for c in cs[lo:hi]), w, np.ascontiguousarray(b[lo:hi]),
                 int(n_bins)) for lo, hi in parts])
            fb = mpz.from_bytes
            out = [fb(res[0][i : i + w], "big") for i in range(0, len(res[0]), w)]
            for r in res[1:]:
                out = [a * fb(r[i * w : (i + 1) * w], "big") % n for i, a in enumerate(out)]
        else:
            out = bucket_sums(cs, b, int(n_bins), self.public_key._mn)
        return self._derived(_obj_array(out))

    def concat(self, *others: "CipherVector") -> "CipherVector":
        """This vector followed by ``others`` (same key; scales aligned up)."""
        return concat([self, *others])

    # -------------------------------------------------- randomness / wire
    def obfuscate(self, *, parallel: bool | None = None, for_key_owner: bool = True) -> "CipherVector":
        """Re-randomize every ciphertext (the Paillier twin's signature).

        Parameters
        ----------
        parallel : bool or None
            ``for_key_owner`` only: split the exponentiations over one thread per core (they
            release the GIL); None: for 16 or more ciphertexts.  Unless ``False``, a background
            thread then prepares the next re-randomizers (``PublicKey._refill_obfuscators``).
        for_key_owner : bool, default=True
            ``True``: multiply by ``rho^n`` with ``rho`` fresh and uniform in ``Z_n^*`` -- the
            result depends only on the plaintext even if the key owner crafted the inputs or
            the key (what :meth:`to_blob` uses).  Takes values from
            :meth:`PublicKey.precompute_obfuscators` first, each exactly once.
            ``False``: multiply by ``h^r`` with a fresh ``r`` uniform below ``2^r_bits``
            (fixed-base table of the public ``h``, ~7x cheaper) -- uniform over ``<h>``: enough
            for any recipient that is not the key owner, and even for a key owner that
            follows the protocol (all honest ciphertexts lie in ``g^m <h>``), but it keeps a
            character marker that a deviating owner planted in its own ciphertexts
            (docs/crypto.md, "OU").
        """
        pk = self.public_key
        n = pk._mn
        if for_key_owner:
            rs = pk._take_obfuscators(len(self), parallel)
            if parallel is not False and len(self):
                pk._refill_obfuscators(len(self))
        else:
            th, rb, randbits = pk._get_engine().th, pk.r_bits, secrets.randbits
            rs = [th.pow(mpz(randbits(rb))) for _ in range(len(self))]
        return CipherVector._make(pk, _obj_array([c * r % n for c, r in zip(self._c, rs)]), self.frac_bits, fresh=True)

    @property
    def is_fresh(self) -> bool:
        """True if every ciphertext was freshly encrypted or re-randomized by this process."""
        return self._fresh

    def to_blob(self) -> CipherBlob:
        """Fixed-width big-endian ciphertexts (``width`` bytes each) with the key fingerprint.

        Derived vectors are re-randomized first (:meth:`obfuscate`); cached.
        """
        if self._blob is None:
            v = self if self._fresh else self.obfuscate()
            pk = self.public_key
            w = pk.width
            self._blob = CipherBlob(
                scheme=SCHEME,
                key_fingerprint=pk.fingerprint,
                width=w,
                count=len(v),
                data=b"".join(c.to_bytes(w, "big") for c in v._c),
                meta={"frac_bits": self.frac_bits},
            )
        return self._blob


def concat(vectors: Iterable[CipherVector]) -> CipherVector:
    """Concatenate vectors under one key (scales aligned up to the largest)."""
    vs = list(vectors)
    if not vs:
        raise ConfigError("concat needs at least one CipherVector")
    first = vs[0]
    for v in vs[1:]:
        first._check_same_key(v)
    fb = max(v.frac_bits for v in vs)
    parts = [(v if v.frac_bits == fb else v._rescaled(fb))._c for v in vs]
    return CipherVector._make(first.public_key, np.concatenate(parts), fb, fresh=all(v._fresh for v in vs))


# ====================================================================== compression
def compress(cv: CipherVector, *, item_bits: int, parallel: bool | None = None) -> CipherVector:
    """Shift ``k = plaintext_bits // item_bits`` summed packed ciphertexts into one.

    Item ``i`` of a group lands at bits ``[i item_bits, (i + 1) item_bits)``; every item
    must be a non-negative value below ``2^item_bits``, so the packed plaintext stays
    below ``2^plaintext_bits`` and passes the decryption guard.  The shifts run batched
    over all groups (GIL-free, one thread per core; ``parallel=None``: from 16 groups).
    """
    if not isinstance(cv, CipherVector):
        raise ConfigError(f"ou.compress expects an OU CipherVector, got {type(cv).__name__}")
    pk = cv.public_key
    if isinstance(item_bits, bool) or not isinstance(item_bits, (int, np.integer)) or item_bits < 1:
        raise ConfigError(f"The 'item_bits' parameter of compress must be an int >= 1. Got {item_bits!r} instead.")
    k = pk.plaintext_bits // int(item_bits)
    if k < 1:
        raise ConfigError(f"item_bits={item_bits} does not fit in OU's {pk.plaintext_bits}-bit plaintext space")
    return cv._derived(_obj_array(horner_pack(cv._c.tolist(), k, int(item_bits), pk._mn, parallel)), 0)
