"""Paillier engine: vectorized, CRT-accelerated, phe-compatible.

This is the additively homomorphic scheme every vertical protocol uses.  Keys are
ordinary Paillier keys with ``g = n + 1`` (the same format as ``phe``; convert with
``from_phe``/``to_phe``), ciphertexts are ``c = (1 + m n) r^n mod n^2`` and decrypt
with ``phe`` and vice versa.

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

import hashlib
import math
import secrets
import threading
from collections.abc import Iterable, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz, powmod

from ..errors import ConfigError, DataError, DecryptionError
from . import parallel as _par
from . import pool as _pool
from ._raw import OwnerEngine, PublicEngine, _obj_array, _reduce_product, bytes_to_ints, group_sum, ints_to_bytes, mul_pairs
from .blob import CipherBlob

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "DEFAULT_FRAC_BITS",
    "PublicKey",
    "PrivateKey",
    "CipherVector",
    "FixedPoint",
    "generate_keypair",
    "concat",
    "compress",
]

#: Default modulus size (112-bit security, NIST SP 800-57).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted outside :mod:`fedcredit.testing`.
MIN_KEY_BITS = 2048
#: Default fixed-point precision: values are multiples of ``2^-32``.
DEFAULT_FRAC_BITS = 32
SCHEME = "paillier"

_MPZ = type(mpz(0))
# A uniform obfuscator (full exponentiation) costs ~60 fixed-base ones: send to the pool sooner.
_UNIFORM_WEIGHT = 32
# Moduli of small keys created in this process by fedcredit.testing: the only
# keys below MIN_KEY_BITS that PublicKey accepts (never a peer's choice).
_TEST_MODULI: set[int] = set()


# ====================================================================== keys
def _check_bits(n: int) -> None:
    if n.bit_length() < MIN_KEY_BITS and int(n) not in _TEST_MODULI:
        raise ConfigError(
            f"Paillier keys must be at least {MIN_KEY_BITS} bits; got {n.bit_length()}. "
            "Use 2048 (default) or 3072. For fast logic tests use fedcredit.testing.small_keypair(bits)."
        )


def _random_prime(bits: int):
    """A random prime of exactly ``bits`` bits with the top two bits set (so p*q has 2*bits bits)."""
    while True:
        cand = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
        p = gmpy2.next_prime(cand)
        if p.bit_length() == bits and gmpy2.is_prime(p, 50):
            return p


def _generate(bits: int):
    half = bits // 2
    while True:
        p = _random_prime(half)
        q = _random_prime(bits - half)
        if p == q:
            continue
        n = p * q
        if n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            return PublicKey(int(n)), (int(p), int(q))


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple["PublicKey", "PrivateKey"]:
    """Generate a Paillier key pair.

    Parameters
    ----------
    bits : int, default=2048
        Modulus size; 2048 (112-bit security) or larger, e.g. 3072 (128-bit).

    Returns
    -------
    public_key : PublicKey
    private_key : PrivateKey

    Raises
    ------
    ConfigError
        If ``bits`` is below 2048 (use :func:`fedcredit.testing.small_keypair`
        in tests) or not an int.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigError(f"The 'bits' parameter of generate_keypair must be an int. Got {bits!r} instead.")
    bits = int(bits)
    if bits < MIN_KEY_BITS:
        raise ConfigError(
            f"The 'bits' parameter of generate_keypair must be an int in [{MIN_KEY_BITS}, inf). Got {bits} instead. "
            "Small keys for fast logic tests: fedcredit.testing.small_keypair(bits)."
        )
    if bits % 2:
        raise ConfigError(f"The 'bits' parameter of generate_keypair must be even. Got {bits} instead.")
    pk, (p, q) = _generate(bits)
    return pk, PrivateKey(pk, p, q)


class PublicKey:
    """A Paillier public key (``n``; ``g = n + 1``).

    Parameters
    ----------
    n : int
        The modulus.  Below 2048 bits only for keys made by :mod:`fedcredit.testing`.

    Attributes
    ----------
    n, nsquare : int
    bits : int
        Bit length of ``n``.
    width : int
        Bytes of one serialized ciphertext (bytes of ``n^2``).
    fingerprint : bytes
        ``sha256`` of ``n`` (big-endian); identifies the key on the wire.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, (int, _MPZ, np.integer)) or int(n) < 3 or int(n) % 2 == 0:
            raise ConfigError("a Paillier modulus must be an odd int > 2")
        n = int(n)
        _check_bits(n)
        self.n = n
        self.nsquare = n * n
        self.bits = n.bit_length()
        self.width = (self.nsquare.bit_length() + 7) // 8
        self._n_bytes = n.to_bytes((self.bits + 7) // 8, "big")
        self.fingerprint = hashlib.sha256(self._n_bytes).digest()
        self._mn = mpz(n)
        self._mnsq = mpz(self.nsquare)
        self._engine: PublicEngine | None = None
        self._lock = threading.Lock()
        # uniform obfuscators computed ahead of use in the pool (each used once, then discarded)
        self._reserve: list = []
        self._pending = None
        self._recent: list = []  # sizes of the last re-randomizations for the key owner

    # -------------------------------------------------- identity / wire
    def __eq__(self, other) -> bool:
        return isinstance(other, PublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("paillier", self.n))

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, fingerprint={self.fingerprint[:8].hex()})"

    def to_wire(self) -> dict:
        """``{"scheme": "paillier", "n": bytes}`` for the transport (only ``n``)."""
        return {"scheme": SCHEME, "n": self._n_bytes}

    @classmethod
    def from_wire(cls, d: dict) -> "PublicKey":
        """Inverse of :meth:`to_wire`; refuses malformed or too-small keys."""
        if not isinstance(d, dict) or d.get("scheme") != SCHEME or not isinstance(d.get("n"), (bytes, int)):
            raise ConfigError("not a Paillier public key message")
        n = d["n"]
        return cls(int.from_bytes(n, "big") if isinstance(n, bytes) else n)

    @classmethod
    def from_phe(cls, key) -> "PublicKey":
        """From a ``phe.PaillierPublicKey`` (must use ``g = n + 1``, as phe does)."""
        if int(key.g) != int(key.n) + 1:
            raise ConfigError("only Paillier keys with g = n + 1 are supported")
        return cls(int(key.n))

    def to_phe(self):
        """A ``phe.PaillierPublicKey`` with the same ``n``."""
        from phe import paillier as phe_paillier

        return phe_paillier.PaillierPublicKey(self.n)

    # -------------------------------------------------- encryption
    def _get_engine(self) -> PublicEngine:
        with self._lock:
            if self._engine is None:
                self._engine = PublicEngine(self.n)
            return self._engine

    def _take_uniform(self, count: int) -> list:
        """Up to ``count`` precomputed uniform obfuscators (removed from the reserve: never used twice)."""
        with self._lock:
            fut = self._pending
            if fut is not None and fut.done():
                self._pending = None
                try:
                    self._reserve.extend(bytes_to_ints(fut.result(), self.width))
                except Exception:  # a failed background task: compute them when needed instead
                    pass
            out = self._reserve[:count]
            del self._reserve[:count]
        return out

    def _refill_uniform(self, count: int) -> None:
        """After a re-randomization of ``count`` values, start computing uniform obfuscators in this
        process's pool for the next ones: up to the sum of the last three counts, less what is in reserve.

        Protocols re-randomize similar numbers of ciphertexts each round (gradient sums per batch; compressed
        histograms per tree level, so three levels ~ one tree) and wait for peers in between, so the next
        rounds' full exponentiations (~9 ms each at 2048 bits) mostly run while this party waits: in a
        one-process pool at the lowest CPU priority (``parallel.submit_idle``), so they use only idle CPU and
        never slow foreground work (this party's or a co-located one's). Only with production-size keys
        and an executor with an idle pool (the local backend); at most 4,096 at a time.
        """
        with self._lock:
            self._recent = (self._recent + [int(count)])[-3:]
            want = min(4096, sum(self._recent)) - len(self._reserve)
        if want < 1 or self.bits < 2048 or _par.pool_size() < 2:
            return
        with self._lock:
            if self._pending is not None:
                return
            try:  # None: the executor has no idle pool (a distributed backend)
                self._pending = _par.submit_idle(_pool.w_uniform_obfuscators, self._n_bytes, int(want), self.width)
            except Exception:  # a broken or shut-down pool: the next call computes them when needed
                self._pending = None

    def _reduce(self, ints) -> list:
        """Plaintext ints → mpz in ``[0, n)``; accepts negatives down to ``-n/2``."""
        n = self.n
        lo = -(n // 2)
        if isinstance(ints, np.ndarray) and ints.dtype.kind in "iu":
            if ints.ndim != 1:
                ints = ints.ravel()
            return [mpz(v) % self._mn for v in ints.tolist()]
        out = []
        for v in ints:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, _MPZ, np.integer)):
                raise ConfigError(f"plaintexts must be ints, got {type(v).__name__}")
            v = int(v)
            if not lo <= v < n:
                raise DataError("plaintext outside [-n/2, n)")
            out.append(mpz(v % n))
        return out

    def encrypt_ints(self, ints, *, parallel: bool | None = None) -> "CipherVector":
        """Encrypt integers with the public key only (anyone may do this).

        Parameters
        ----------
        ints : sequence of int or ndarray of int, shape (k,)
            Values in ``[-n/2, n)``; negatives are encoded as ``n + v``.
        parallel : bool or None, default=None
            Use the process pool (None: for vectors of 512 or more).

        Returns
        -------
        CipherVector
            Of length ``k``, ``frac_bits=0``.
        """
        pk = self
        ms = self._reduce(ints)
        if _par.use_parallel(len(ms), parallel, pk.bits):
            parts = _par.split(len(ms), _par.pool_size())
            res = _par.parallel_map(
                _pool.w_public_encrypt, [(self._n_bytes, [int(m) for m in ms[lo:hi]], self.width) for lo, hi in parts]
            )
            cs = bytes_to_ints(b"".join(res), self.width)
        else:
            cs = self._get_engine().encrypt(ms)
        return CipherVector._make(self, _obj_array(cs), 0, fresh=True)

    def encrypt(self, x, *, frac_bits: int = DEFAULT_FRAC_BITS, parallel: bool | None = None) -> "CipherVector":
        """Encrypt a float vector in fixed point (see :class:`FixedPoint`).

        Parameters
        ----------
        x : array_like of float, shape (k,)
        frac_bits : int, default=32
        parallel : bool or None

        Returns
        -------
        CipherVector
            With ``frac_bits`` set, so :meth:`PrivateKey.decrypt` restores floats.
        """
        fp = FixedPoint(frac_bits=frac_bits)
        cv = self.encrypt_ints(fp.encode(x), parallel=parallel)
        return CipherVector._make(self, cv._c, frac_bits, fresh=True)

    def encrypt_zeros(self, count: int) -> "CipherVector":
        """``count`` encryptions of 0 without randomness (the value ``1``); obfuscate before sending."""
        return CipherVector._make(self, _obj_array([mpz(1)] * int(count)), 0, fresh=False)

    def vector_from_raw(self, cs, *, frac_bits: int = 0) -> "CipherVector":
        """A vector from ciphertext integers mod ``n^2`` computed outside this module (hazmat).

        For homomorphic kernels that work on :meth:`CipherVector.raw_ints` (e.g. the bucket
        multi-exponentiation in :mod:`fedcredit.protocols.hetero_lr._matvec`). The result is
        marked *derived*, never fresh, so :meth:`CipherVector.to_blob` re-randomizes it before it
        leaves the process (the key owner could otherwise learn how the integers were formed).

        Raises
        ------
        ConfigError
            If a value is not an int in ``(0, n^2)`` or ``frac_bits`` is negative.
        """
        arr = _obj_array([c if type(c) is _MPZ else mpz(int(c)) for c in cs])
        nsq = self._mnsq
        if int(frac_bits) < 0 or any(not 0 < c < nsq for c in arr):
            raise ConfigError("raw ciphertexts must be ints in (0, n^2) with frac_bits >= 0")
        return CipherVector._make(self, arr, int(frac_bits), fresh=False)

    # -------------------------------------------------- wire
    def vector_from_blob(self, blob: CipherBlob) -> "CipherVector":
        """Rebuild a :class:`CipherVector` from a :class:`CipherBlob`.

        Raises
        ------
        DecryptionError
            Opaquely, if the blob is for another key or scheme, has the wrong
            width, or holds a value that is not a unit below ``n^2``.
        """
        if not isinstance(blob, CipherBlob):
            raise DecryptionError()
        if (
            blob.scheme != SCHEME
            or not secrets.compare_digest(bytes(blob.key_fingerprint), self.fingerprint)
            or blob.width != self.width
            or len(blob.data) != blob.width * blob.count
        ):
            raise DecryptionError()
        frac_bits = int(blob.meta.get("frac_bits", 0))
        if not 0 <= frac_bits <= 4 * self.bits:
            raise DecryptionError()
        cs = bytes_to_ints(blob.data, self.width)
        nsq, n = self._mnsq, self._mn
        for c in cs:
            if not 0 < c < nsq or gmpy2.gcd(c, n) != 1:
                raise DecryptionError()
        return CipherVector._make(self, _obj_array(cs), frac_bits, fresh=False)


class PrivateKey:
    """A Paillier private key (``p``, ``q``). It has no wire form and cannot be pickled.

    Parameters
    ----------
    public_key : PublicKey
    p, q : int
        The prime factors of ``public_key.n``.
    """

    def __init__(self, public_key: PublicKey, p: int, q: int):
        p, q = int(p), int(q)
        if p * q != public_key.n or p < 2 or q < 2:
            raise ConfigError("p * q does not match the public key")
        if p > q:
            p, q = q, p
        self.public_key = public_key
        self._p, self._q = p, q
        half = (public_key.bits + 7) // 8
        # KeyBytes: shipped only to the party's own pool/cluster, and hidden from any task repr a worker logs
        self._p_bytes = _pool.KeyBytes(p.to_bytes(half, "big"))
        self._q_bytes = _pool.KeyBytes(q.to_bytes(half, "big"))
        self._engine: OwnerEngine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PrivateKey(bits={self.public_key.bits}, fingerprint={self.public_key.fingerprint[:8].hex()})"

    def __reduce__(self):
        raise TypeError("Paillier private keys cannot be pickled or serialized")

    def __eq__(self, other) -> bool:
        return isinstance(other, PrivateKey) and other._p == self._p and other._q == self._q

    def __hash__(self) -> int:
        return hash(("paillier-sk", self.public_key.n))

    @classmethod
    def from_phe(cls, key) -> "PrivateKey":
        """From a ``phe.PaillierPrivateKey``."""
        return cls(PublicKey.from_phe(key.public_key), int(key.p), int(key.q))

    def to_phe(self):
        """A ``phe.PaillierPrivateKey`` for the same key (stays in this process)."""
        from phe import paillier as phe_paillier

        return phe_paillier.PaillierPrivateKey(self.public_key.to_phe(), self._p, self._q)

    def _get_engine(self) -> OwnerEngine:
        with self._lock:
            if self._engine is None:
                self._engine = OwnerEngine(self._p, self._q)
            return self._engine

    # -------------------------------------------------- encryption (key owner)
    def encrypt_ints(self, ints, *, parallel: bool | None = None) -> "CipherVector":
        """Encrypt integers as the key owner (CRT + short-exponent fixed-base obfuscation).

        Same ciphertext distribution and format as :meth:`PublicKey.encrypt_ints`
        (see the module docstring for the security argument), several times faster.

        Parameters
        ----------
        ints : sequence of int or ndarray of int, shape (k,)
            Values in ``[-n/2, n)``.
        parallel : bool or None, default=None
            Use the process pool (None: for vectors of 512 or more).

        Returns
        -------
        CipherVector
        """
        pk = self.public_key
        ms = pk._reduce(ints)
        if _par.use_parallel(len(ms), parallel, pk.bits):
            parts = _par.split(len(ms), _par.pool_size())
            res = _par.parallel_map(
                _pool.w_owner_encrypt,
                [(self._p_bytes, self._q_bytes, [int(m) for m in ms[lo:hi]], pk.width) for lo, hi in parts],
            )
            cs = bytes_to_ints(b"".join(res), pk.width)
        else:
            cs = self._get_engine().encrypt(ms)
        return CipherVector._make(pk, _obj_array(cs), 0, fresh=True)

    def encrypt(self, x, *, frac_bits: int = DEFAULT_FRAC_BITS, parallel: bool | None = None) -> "CipherVector":
        """Encrypt a float vector in fixed point as the key owner (see :meth:`PublicKey.encrypt`)."""
        fp = FixedPoint(frac_bits=frac_bits)
        cv = self.encrypt_ints(fp.encode(x), parallel=parallel)
        return CipherVector._make(self.public_key, cv._c, frac_bits, fresh=True)

    def obfuscate(self, cv: "CipherVector", *, parallel: bool | None = None) -> "CipherVector":
        """Re-randomize ``cv`` with the owner's fixed-base CRT engine, for parties that are not the owner.

        Parties without ``p, q`` cannot tell these from uniform re-randomizations (assumptions
        (i) and (ii) of the module docstring); the owner itself can, but it is the owner.
        """
        self._check_vector(cv)
        pk = self.public_key
        if _par.use_parallel(len(cv), parallel, pk.bits):
            data = ints_to_bytes(cv._c, pk.width)
            w = pk.width
            parts = _par.split(len(cv), _par.pool_size())
            res = _par.parallel_map(
                _pool.w_owner_obfuscate, [(self._p_bytes, self._q_bytes, data[lo * w : hi * w], w) for lo, hi in parts]
            )
            cs = bytes_to_ints(b"".join(res), w)
        else:
            cs = self._get_engine().obfuscate(list(cv._c))
        return CipherVector._make(pk, _obj_array(cs), cv.frac_bits, fresh=True)

    # -------------------------------------------------- decryption
    def _check_vector(self, cv) -> None:
        if not isinstance(cv, CipherVector) or cv.public_key != self.public_key:
            raise DecryptionError()

    def decrypt_ints(self, cv: "CipherVector", *, parallel: bool | None = None) -> list[int]:
        """Decrypt to integers in ``[0, n)`` (CRT over ``p^2``, ``q^2``).

        Raises
        ------
        DecryptionError
            Opaquely, for a vector under another key or an invalid ciphertext.
        """
        self._check_vector(cv)
        pk = self.public_key
        nsq, n = pk._mnsq, pk._mn
        for c in cv._c:
            if not 0 < c < nsq or gmpy2.gcd(c, n) != 1:
                raise DecryptionError()
        try:
            if _par.use_parallel(len(cv), parallel, pk.bits):
                w = pk.width
                data = ints_to_bytes(cv._c, w)
                parts = _par.split(len(cv), _par.pool_size())
                res = _par.parallel_map(
                    _pool.w_owner_decrypt, [(self._p_bytes, self._q_bytes, data[lo * w : hi * w], w) for lo, hi in parts]
                )
                return [m for r in res for m in r]
            return [int(m) for m in self._get_engine().decrypt(cv._c)]
        except DecryptionError:
            raise
        except Exception:
            raise DecryptionError() from None

    def decrypt_signed(self, cv: "CipherVector", *, parallel: bool | None = None) -> list[int]:
        """Decrypt to signed integers in ``(-n/2, n/2]`` (values above ``n/2`` are negative)."""
        n = self.public_key.n
        half = n // 2
        return [m - n if m > half else m for m in self.decrypt_ints(cv, parallel=parallel)]

    def decrypt(self, cv: "CipherVector", *, parallel: bool | None = None) -> np.ndarray:
        """Decrypt a fixed-point vector to ``float64`` using its ``frac_bits``.

        Raises
        ------
        DecryptionError
            Opaquely, also when a value is too large for a float (a sign of a
            tampered or misused ciphertext).
        """
        vals = self.decrypt_signed(cv, parallel=parallel)
        try:
            return FixedPoint(frac_bits=cv.frac_bits).decode(vals)
        except (OverflowError, ValueError):
            raise DecryptionError() from None


# ====================================================================== vectors
class CipherVector:
    """An immutable vector of Paillier ciphertexts under one public key.

    Build one with ``PublicKey.encrypt*``, ``PrivateKey.encrypt*`` or
    :meth:`PublicKey.vector_from_blob`.  Operations return new vectors.

    Attributes
    ----------
    public_key : PublicKey
    frac_bits : int
        Fixed-point scale of the plaintexts (0 for plain integers).

    Notes
    -----
    Indexing with an int returns a length-1 vector (there is no scalar
    ciphertext type).  Binary operations broadcast a length-1 operand.
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

    # -------------------------------------------------- container protocol
    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, idx) -> "CipherVector":
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for CipherVector of length {len(self)}")
            sel = self._c[i : i + 1] if i >= 0 else self._c[len(self) + i : len(self) + i + 1]
        else:
            sel = self._c[idx]
        return CipherVector._make(self.public_key, np.asarray(sel, dtype=object).reshape(-1), self.frac_bits, fresh=self._fresh)

    def __repr__(self) -> str:
        return f"CipherVector(len={len(self)}, frac_bits={self.frac_bits}, key={self.public_key.fingerprint[:4].hex()})"

    def __iter__(self):
        raise TypeError("iterate over a CipherVector by indexing (cv[i]) - it has no scalar element type")

    def ciphertexts(self) -> list[int]:
        """The raw ciphertext integers (hazmat: not re-randomized)."""
        return [int(c) for c in self._c]

    def raw_ints(self) -> np.ndarray:
        """The ciphertexts as a read-only object array of ``gmpy2.mpz``, without copying (hazmat).

        For homomorphic kernels outside this module; they return their results through
        :meth:`PublicKey.vector_from_raw`, which marks them for re-randomization before export.
        """
        v = self._c.view()
        v.flags.writeable = False
        return v

    # -------------------------------------------------- helpers
    def _check_same_key(self, other: "CipherVector") -> None:
        if not isinstance(other, CipherVector):
            raise TypeError(f"expected a CipherVector, got {type(other).__name__}")
        if other.public_key != self.public_key:
            raise ConfigError("CipherVectors under different public keys")

    def _broadcast(self, a: np.ndarray, b: np.ndarray):
        if len(a) == len(b) or len(b) == 1 or len(a) == 1:
            return a, b
        raise ConfigError(f"length mismatch: {len(a)} vs {len(b)}")

    def _aligned(self, other: "CipherVector"):
        """Both operands at the larger scale (scaling up is exact: multiply by 2^d)."""
        a, b = self, other
        if a.frac_bits < b.frac_bits:
            a = a.mul_plain(1 << (b.frac_bits - a.frac_bits))
            a = a._derived(a._c, b.frac_bits)
        elif b.frac_bits < a.frac_bits:
            b = b.mul_plain(1 << (a.frac_bits - b.frac_bits))
            b = b._derived(b._c, a.frac_bits)
        return a, b

    def _plain(self, values, frac_bits: int | None = None) -> tuple[list, int]:
        """Plaintext operand → (ints mod n, its frac_bits). Floats are fixed-point encoded."""
        arr = values if isinstance(values, np.ndarray) else None
        if arr is None:
            if isinstance(values, (int, np.integer, float, np.floating)) and not isinstance(values, bool):
                arr = np.asarray([values])
                if isinstance(values, (int, np.integer)) and not -(2**62) < int(values) < 2**62:
                    arr = np.asarray([int(values)], dtype=object)
            else:
                arr = np.asarray(list(values), dtype=object) if not isinstance(values, np.ndarray) else values
                if arr.dtype == object and all(isinstance(v, float) for v in arr):
                    arr = arr.astype(np.float64)
        if arr.dtype.kind == "f":
            fb = self.frac_bits if frac_bits is None else int(frac_bits)
            ints = FixedPoint(frac_bits=fb).encode(arr)
            return self.public_key._reduce(ints), fb
        return self.public_key._reduce(arr.tolist() if arr.dtype == object else arr.astype(np.int64) if arr.dtype.kind == "b" else arr), 0

    # -------------------------------------------------- homomorphic ops
    def __add__(self, other: "CipherVector") -> "CipherVector":
        """Elementwise ciphertext addition (``E(a) * E(b) mod n^2``)."""
        if not isinstance(other, CipherVector):
            return NotImplemented
        self._check_same_key(other)
        a, b = self._aligned(other)
        x, y = self._broadcast(a._c, b._c)
        nsq = self.public_key._mnsq
        if len(x) == len(y):
            return a._derived(_obj_array(mul_pairs(x, y, nsq)))
        return a._derived(x * y % nsq)

    def __neg__(self) -> "CipherVector":
        nsq = self.public_key._mnsq
        return self._derived(_obj_array([gmpy2.invert(c, nsq) for c in self._c]))

    def __sub__(self, other: "CipherVector") -> "CipherVector":
        """Elementwise difference (histogram subtraction): ``E(a) * E(b)^-1``."""
        if not isinstance(other, CipherVector):
            return NotImplemented
        self._check_same_key(other)
        return self + (-other)

    def add_plain(self, values) -> "CipherVector":
        """Add plaintexts (scalar or vector of the same length).

        Integers are added as they are (at this vector's scale); floats are
        fixed-point encoded at this vector's ``frac_bits``.
        """
        ms, _ = self._plain(values, self.frac_bits)
        n, nsq = self.public_key._mn, self.public_key._mnsq
        gm = _obj_array([(m * n + 1) % nsq for m in ms])
        x, y = self._broadcast(self._c, gm)
        return self._derived(x * y % nsq)

    def mul_plain(self, values, *, frac_bits: int | None = None) -> "CipherVector":
        """Multiply by plaintexts (scalar or vector of the same length).

        Integers (negative allowed) keep the scale; floats are encoded with
        ``frac_bits`` (default :data:`DEFAULT_FRAC_BITS`) and the result's
        ``frac_bits`` is the sum of both scales.
        """
        is_float = (isinstance(values, (float, np.floating))) or (
            isinstance(values, np.ndarray) and values.dtype.kind == "f"
        ) or (isinstance(values, (list, tuple)) and values and all(isinstance(v, float) for v in values))
        fb = (DEFAULT_FRAC_BITS if frac_bits is None else int(frac_bits)) if is_float else None
        ks, kfb = self._plain(values, fb)
        n, nsq = self.public_key._mn, self.public_key._mnsq
        half = n // 2

        def one(c, k):
            if k > half:
                return powmod(gmpy2.invert(c, nsq), n - k, nsq)
            return powmod(c, k, nsq)

        if len(ks) == 1:
            k = ks[0]
            out = [one(c, k) for c in self._c]
        else:
            if len(ks) != len(self):
                raise ConfigError(f"length mismatch: {len(self)} vs {len(ks)}")
            out = [one(c, k) for c, k in zip(self._c, ks)]
        return self._derived(_obj_array(out), self.frac_bits + kfb)

    def dot(self, values, *, frac_bits: int | None = None) -> "CipherVector":
        """``sum_i E(x_i) * w_i`` as a length-1 vector (``mul_plain`` then ``sum``)."""
        return self.mul_plain(values, frac_bits=frac_bits).sum()

    def sum(self) -> "CipherVector":
        """Sum of all elements as a length-1 vector (``E(0) = 1`` when empty)."""
        if len(self) == 0:
            return self._derived(_obj_array([mpz(1)]))
        return self._derived(_obj_array([_reduce_product(self._c, self.public_key._mnsq)]))

    def group_sum(self, group_ids, n_groups: int) -> "CipherVector":
        """Sum of ciphertexts per group (histogram bins).

        Parameters
        ----------
        group_ids : ndarray of int, shape (len(self),)
            Group of each element, in ``[0, n_groups)``.
        n_groups : int

        Returns
        -------
        CipherVector
            Length ``n_groups``; an empty group holds ``1`` (an encryption of 0
            with no randomness -- it is re-randomized before export).
        """
        gid = self._check_groups(group_ids, n_groups)
        return self._derived(_obj_array(group_sum(self._c, gid, int(n_groups), self.public_key._mnsq)))

    def _check_groups(self, group_ids, n_groups) -> np.ndarray:
        gid = np.asarray(group_ids)
        if gid.dtype.kind not in "iu":
            raise ConfigError(f"group ids must be integers, got dtype {gid.dtype}")
        if len(gid) != len(self):
            raise ConfigError(f"group ids have length {len(gid)}, vector {len(self)}")
        if len(gid) and (gid.min() < 0 or gid.max() >= n_groups):
            raise ConfigError(f"group ids must be in [0, {n_groups})")
        return gid.astype(np.int64, copy=False)

    def histogram(self, bins, n_bins: int, *, parallel: bool | None = None) -> "CipherVector":
        """Per-feature bin sums: :meth:`group_sum` for every column of ``bins``.

        Parameters
        ----------
        bins : ndarray of int, shape (len(self), n_features)
            Bin index of each row for each feature, in ``[0, n_bins)``.
        n_bins : int
        parallel : bool or None
            Split the rows over the process pool (None: when rows * features >= 512).

        Returns
        -------
        CipherVector
            Length ``n_features * n_bins``, feature-major (feature ``j``'s bins
            are ``[j * n_bins, (j + 1) * n_bins)``).
        """
        b = np.asarray(bins)
        if b.ndim != 2:
            raise ConfigError(f"bins must be 2-D (rows, features), got shape {b.shape}")
        if b.dtype.kind not in "iu":
            raise ConfigError(f"bins must be integers, got dtype {b.dtype}")
        if b.shape[0] != len(self):
            raise ConfigError(f"bins have {b.shape[0]} rows, vector {len(self)}")
        if b.size and (b.min() < 0 or b.max() >= n_bins):
            raise ConfigError(f"bin ids must be in [0, {n_bins})")
        n_bins = int(n_bins)
        nsq = self.public_key._mnsq
        n_feat = b.shape[1]
        if _par.use_parallel(b.size, parallel, self.public_key.bits) and len(self) >= 2:
            w = self.public_key.width
            data = ints_to_bytes(self._c, w)
            parts = _par.split(len(self), _par.pool_size())
            res = _par.parallel_map(
                _pool.w_histogram,
                [(self.public_key._n_bytes, data[lo * w : hi * w], w, np.ascontiguousarray(b[lo:hi]), n_bins) for lo, hi in parts],
            )
            acc = np.asarray(bytes_to_ints(res[0], w), dtype=object)
            for r in res[1:]:
                acc = acc * _obj_array(bytes_to_ints(r, w)) % nsq
            return self._derived(_obj_array(list(acc)))
        out = []
        for j in range(n_feat):
            out.extend(group_sum(self._c, b[:, j].astype(np.int64), n_bins, nsq))
        return self._derived(_obj_array(out))

    def concat(self, *others: "CipherVector") -> "CipherVector":
        """This vector followed by ``others`` (same key and scale)."""
        return concat([self, *others])

    # -------------------------------------------------- randomness / wire
    def obfuscate(self, *, parallel: bool | None = None, for_key_owner: bool = True) -> "CipherVector":
        """Re-randomize every ciphertext (multiply by a fresh encryption of 0).

        Use before sending results computed from someone else's ciphertexts;
        :meth:`to_blob` does it automatically for such vectors (with ``for_key_owner=True``).

        Parameters
        ----------
        parallel : bool or None
            Use the process pool / compute backend (None: by cost).
        for_key_owner : bool, default=True
            ``True``: multiply by ``r^n`` with ``r`` uniform in ``Z_n^*`` (one full
            exponentiation per ciphertext, ~9 ms at 2048 bits). The key owner knows ``p``
            and ``q`` and sees each ciphertext's ``r mod n``; anything less than a uniform
            ``r`` lets it read characters of the summed rows' randomness, i.e. which rows
            went into a sum (see the module docstring).  ``False``: the fast fixed-base
            obfuscator, **only** for a result whose recipients (and anyone they forward it
            to unchanged) are not the key owner -- they cannot compute those characters
            (the only public one, the Jacobi symbol, is a fair coin per obfuscator).
        """
        pk = self.public_key
        fn = _pool.w_public_obfuscate if for_key_owner else _pool.w_public_obfuscate_fixed
        done, todo = [], list(self._c)
        if for_key_owner:  # precomputed uniform obfuscators first (see PublicKey._refill_uniform)
            nsq = pk._mnsq
            ready = pk._take_uniform(len(todo))
            done = [c * r % nsq for c, r in zip(todo, ready)]
            todo = todo[len(ready):]
        if todo and _par.use_parallel(len(todo), parallel, pk.bits, weight=_UNIFORM_WEIGHT if for_key_owner else 1):
            w = pk.width
            data = ints_to_bytes(todo, w)
            parts = _par.split(len(todo), _par.pool_size())
            res = _par.parallel_map(fn, [(pk._n_bytes, data[lo * w : hi * w], w) for lo, hi in parts])
            done += bytes_to_ints(b"".join(res), w)
        elif todo:
            eng = pk._get_engine()
            done += eng.obfuscate(todo) if for_key_owner else eng.obfuscate_fixed(todo)
        if for_key_owner and parallel is not False:
            pk._refill_uniform(len(self))
        return CipherVector._make(pk, _obj_array(done), self.frac_bits, fresh=True)

    @property
    def is_fresh(self) -> bool:
        """True if every ciphertext was freshly encrypted or re-randomized by this process."""
        return self._fresh

    def to_blob(self) -> CipherBlob:
        """Fixed-width big-endian bytes with the key fingerprint and ``frac_bits``.

        Vectors derived from homomorphic operations (or received from a peer)
        are re-randomized first, with uniform ``r^n`` (``obfuscate(for_key_owner=True)``:
        the recipient is unknown here and may be the key owner); the result is cached
        (the vector is immutable).
        """
        if self._blob is None:
            v = self if self._fresh else self.obfuscate()
            pk = self.public_key
            self._blob = CipherBlob(
                scheme=SCHEME,
                key_fingerprint=pk.fingerprint,
                width=pk.width,
                count=len(v),
                data=ints_to_bytes(v._c, pk.width),
                meta={"frac_bits": self.frac_bits},
            )
        return self._blob

    # -------------------------------------------------- phe interop
    def to_phe(self) -> list:
        """``phe.EncryptedNumber`` objects (exponent 0 for integers; ``frac_bits`` as a base-2 exponent is not
        representable in phe's base-16 encoding, so only integer vectors are converted)."""
        from phe import paillier as phe_paillier

        if self.frac_bits:
            raise ConfigError("only integer (frac_bits=0) vectors convert to phe EncryptedNumbers")
        ppk = self.public_key.to_phe()
        return [phe_paillier.EncryptedNumber(ppk, int(c), 0) for c in self._c]

    @classmethod
    def from_phe(cls, public_key: PublicKey, numbers: Sequence) -> "CipherVector":
        """From ``phe.EncryptedNumber`` objects with exponent 0 under ``public_key``."""
        cs = []
        for e in numbers:
            if int(e.public_key.n) != public_key.n:
                raise ConfigError("EncryptedNumber under another key")
            if e.exponent != 0:
                raise ConfigError("only exponent-0 EncryptedNumbers can be converted; decode scale in phe first")
            cs.append(mpz(e.ciphertext(be_secure=False)))
        return cls._make(public_key, _obj_array(cs), 0, fresh=False)


def concat(vectors: Iterable[CipherVector]) -> CipherVector:
    """Concatenate vectors under one key (scales aligned up to the largest)."""
    vs = list(vectors)
    if not vs:
        raise ConfigError("concat needs at least one CipherVector")
    first = vs[0]
    for v in vs[1:]:
        first._check_same_key(v)
    fb = max(v.frac_bits for v in vs)
    parts = []
    for v in vs:
        if v.frac_bits < fb:
            v = v.mul_plain(1 << (fb - v.frac_bits))
        parts.append(v._c)
    fresh = all(v._fresh for v in vs)
    return CipherVector._make(first.public_key, np.concatenate(parts) if parts else _obj_array([]), fb, fresh=fresh)


# ====================================================================== fixed point
class FixedPoint:
    """Signed fixed-point encoding of floats: ``x -> round(x * 2^frac_bits)``.

    Parameters
    ----------
    frac_bits : int, default=32
        Binary digits after the point.  Encoding error is at most
        ``2^-(frac_bits+1)`` per value (1.2e-10 at 32); a sum of ``k`` encoded
        values is off by at most ``k`` times that.  Any magnitude up to
        ``n / 2^(frac_bits+1)`` is representable (``> 10^590`` at 2048 bits);
        decoding goes through float64 (53-bit mantissa).
    """

    def __init__(self, *, frac_bits: int = DEFAULT_FRAC_BITS):
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 1024:
            raise ConfigError(f"The 'frac_bits' parameter of FixedPoint must be an int in [0, 1024]. Got {frac_bits!r} instead.")
        self.frac_bits = int(frac_bits)

    def encode(self, x) -> list[int]:
        """Floats → Python ints (exact rounding, any magnitude)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        if not np.all(np.isfinite(a)):
            raise DataError("cannot encode NaN or infinite values")
        scaled = np.rint(np.ldexp(a, self.frac_bits))
        if not np.all(np.isfinite(scaled)):
            raise DataError(f"value too large for frac_bits={self.frac_bits}")
        if scaled.size == 0 or np.abs(scaled).max() < 2.0**62:
            return scaled.astype(np.int64).tolist()
        return [int(v) for v in scaled.tolist()]

    def decode(self, ints) -> np.ndarray:
        """Signed ints → float64 (``OverflowError`` if beyond the float range)."""
        f = self.frac_bits
        out = np.empty(len(ints), dtype=np.float64)
        for i, v in enumerate(ints):
            out[i] = math.ldexp(float(v), -f) if abs(v) < 2**1000 else float(v) / float(2**f) if f else float(v)
        return out


# ====================================================================== compression
def compress(cv: CipherVector, *, item_bits: int) -> CipherVector:
    """Shift several summed packed ciphertexts into one ("cipher compression").

    Item ``i`` of each group of ``k = (n_bits - 1) // item_bits`` lands at bits
    ``[i * item_bits, (i + 1) * item_bits)`` of the plaintext (Horner:
    ``acc = acc^(2^item_bits) * c_i``), i.e. the plaintext is ``sum_i x_i 2^(i item_bits)``.
    Items may be signed, ``|x_i| < 2^(item_bits - 1)``: decrypt with ``decrypt_signed`` and
    peel items off the low end with a borrow (as
    :meth:`fedcredit.protocols.secureboost.guest.GHCodec.unpack` does); the sum never
    wraps because ``k * item_bits < n_bits - 1``.

    Returns
    -------
    CipherVector
        ``ceil(len(cv) / k)`` ciphertexts, derived (re-randomized by ``to_blob``).
    """
    pk = cv.public_key
    if isinstance(item_bits, bool) or not isinstance(item_bits, (int, np.integer)) or item_bits < 1:
        raise ConfigError(f"The 'item_bits' parameter of compress must be an int >= 1. Got {item_bits!r} instead.")
    k = (pk.bits - 1) // int(item_bits)
    if k < 1:
        raise ConfigError(f"item_bits={item_bits} does not fit in a {pk.bits}-bit plaintext")
    nsq = pk._mnsq
    shift = mpz(1) << int(item_bits)
    out = []
    cs = cv._c
    for lo in range(0, len(cs), k):
        chunk = cs[lo : lo + k]
        acc = chunk[-1]
        for c in chunk[-2::-1]:
            acc = powmod(acc, shift, nsq) * c % nsq
        out.append(acc)
    return cv._derived(_obj_array(out), 0)
