"""Paillier keys: generation, :class:`PublicKey` (encryption by anyone) and :class:`PrivateKey`
(CRT encryption and decryption by the key owner).

The security argument of the fixed-base fast path used by every fresh encryption here is in
the package docstring (:mod:`fedcredit.crypto.paillier`). A private key has no wire form and
cannot be pickled; its primes reach only the party's own workers, as
:class:`~fedcredit.crypto.pool.KeyBytes`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading

import gmpy2
import numpy as np
from gmpy2 import mpz

from ...errors import ConfigError, DataError, DecryptionError
from .. import parallel as _par
from .. import pool as _pool
from .._raw import OwnerEngine, PublicEngine, _obj_array, bytes_to_ints, ints_to_bytes
from .._reserve import IdleReserve
from ..blob import CipherBlob, check_header, check_units, units_from_bytes
from .encoding import DEFAULT_FRAC_BITS, FixedPoint
from .vector import _MPZ, SCHEME, CipherVector

__all__ = ["DEFAULT_KEY_BITS", "MIN_KEY_BITS", "PublicKey", "PrivateKey", "generate_keypair"]

#: Default modulus size (112-bit security, NIST SP 800-57).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted outside :mod:`fedcredit.testing`.
MIN_KEY_BITS = 2048
# Most uniform obfuscators ready or in flight at once (PublicKey._refill_uniform).
_UNIFORM_MAX = 4096
# Moduli of small keys created in this process by fedcredit.testing: the only
# keys below MIN_KEY_BITS that PublicKey accepts (never a peer's choice).
_TEST_MODULI: set[int] = set()


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

    #: The scheme's name, as on the wire (``to_wire()["scheme"]``, ``CipherBlob.scheme``).
    scheme = SCHEME

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
        # uniform obfuscators computed ahead of use in the idle pool (each used once, then discarded)
        self._uniform = IdleReserve(self._uniform_task, self.width, cap=_UNIFORM_MAX, chunk=64)

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

    def _uniform_task(self, count: int) -> tuple:
        return _pool.w_uniform_obfuscators, (self._n_bytes, int(count), self.width)

    def _take_uniform(self, count: int) -> list:
        """Up to ``count`` precomputed uniform obfuscators (removed from the reserve: never used twice)."""
        return self._uniform.take(count)

    def _refill_uniform(self, count: int) -> None:
        """After a re-randomization of ``count`` values, queue uniform obfuscators for the next ones in this
        process's idle pool: up to the sum of the last three counts, less what is ready or in flight.

        Protocols re-randomize similar numbers of ciphertexts each round (gradient sums per batch; compressed
        histograms per tree level, so three levels ~ one tree) and wait for peers in between, so the next
        rounds' full exponentiations (~9 ms each at 2048 bits) mostly run while this party waits: in a
        one-process pool at the lowest CPU priority (``parallel.submit_idle``, :class:`IdleReserve`, in chunks
        of 64 that become usable as each finishes), so they use only idle CPU and never slow foreground work
        (this party's or a co-located one's). Only with production-size keys and an executor with an idle
        pool (the local backend); at most 4,096 at a time.
        """
        if self.bits < 2048 or _par.pool_size() < 2:
            return
        self._uniform.refill(count)

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
    def _check_header(self, blob: CipherBlob) -> int:
        """A blob's checks that need no ciphertext (key, scheme, width, length); its ``frac_bits``.
        Also the first half of a Dask host's intake (:mod:`fedcredit.crypto.partitioned`)."""
        return check_header(self, blob, SCHEME, 4 * self.bits)

    def vector_from_blob(self, blob: CipherBlob) -> "CipherVector":
        """Rebuild a :class:`CipherVector` from a :class:`CipherBlob`.

        Raises
        ------
        DecryptionError
            Opaquely, if the blob is for another key or scheme, has the wrong
            width, or holds a value that is not a unit below ``n^2``.
        """
        frac_bits = self._check_header(blob)
        cs = units_from_bytes(blob.data, self.width, self._mnsq, self._mn)
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
        check_units(cv._c, nsq, n)
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
