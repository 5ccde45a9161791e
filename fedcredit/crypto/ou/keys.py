"""Okamoto-Uchiyama keys: generation, :class:`PublicKey` (encryption, obfuscator reserve) and
:class:`PrivateKey` (CRT encryption and guarded decryption by the key owner).

The scheme, its parameters and the re-randomization argument are in the package docstring
(:mod:`fedcredit.crypto.ou`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections import deque

import gmpy2
import numpy as np
from gmpy2 import mpz

from ...errors import ConfigError, DataError, DecryptionError
from .. import parallel as _par
from .. import pool as _pool
from .._ou_raw import OwnerEngine, PublicEngine, random_units_nth_power
from .._raw import _obj_array, short_exponent_bits
from .._reserve import IdleReserve
from ..blob import CipherBlob, check_header, check_units, units_from_bytes
from ..paillier.encoding import DEFAULT_FRAC_BITS, FixedPoint
from .vector import SCHEME, CipherVector

__all__ = ["DEFAULT_KEY_BITS", "MIN_KEY_BITS", "GUARD_BITS", "PublicKey", "PrivateKey", "generate_keypair"]

#: Default modulus size of ``n = p^2 q`` (112-bit security; see the module docstring).
DEFAULT_KEY_BITS = 2048
#: Smallest modulus accepted outside tests.
MIN_KEY_BITS = 2048
#: Bits between the largest plaintext the key owner releases and ``p``.
GUARD_BITS = 64
# Background refill of rho^n re-randomizers (PublicKey._refill_obfuscators): key sizes and reserve bound.
_REFILL_MIN_BITS = 2048
_REFILL_MAX = 4096
# The key owner's encryption randomness computed ahead (PrivateKey.encrypt_ints): most values reserved at once
# (256 bytes each at 2048 bits: 32 MiB).
_RANDOMIZERS_MAX = 131_072

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
    r_bits : int
        Length of ``r`` in public encryption (``|p| + |q| + 128``: textbook, no extra assumption).
    owner_r_bits : int
        Length of ``r`` in the key owner's encryption (short exponent, 256 at 2048 and 3072 bits).
    width : int
        Bytes of one serialized ciphertext (bytes of ``n``).
    fingerprint : bytes
        ``sha256`` over the scheme name, ``n``, ``g`` and ``h``.
    """

    #: The scheme's name, as on the wire (``to_wire()["scheme"]``, ``CipherBlob.scheme``).
    scheme = SCHEME

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
        # the key owner's own encryptions: a short r (256 bits at 2048/3072; kangaroo 2^128, docs/crypto.md)
        self.owner_r_bits = short_exponent_bits(bits)
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

    def _check_header(self, blob: CipherBlob) -> int:
        """A blob's checks that need no ciphertext (key, scheme, width, length); its ``frac_bits``.
        Also the first half of a Dask host's intake (:mod:`fedcredit.crypto.partitioned`)."""
        return check_header(self, blob, SCHEME, self.plaintext_bits)

    def vector_from_blob(self, blob: CipherBlob) -> "CipherVector":
        """Rebuild a :class:`CipherVector` from a :class:`CipherBlob`.

        Raises
        ------
        DecryptionError
            Opaquely, if the blob is for another key or scheme, has the wrong width or
            length, or holds a value that is not a unit below ``n``.
        """
        frac_bits = self._check_header(blob)
        cs = units_from_bytes(blob.data, self.width, self._mn, self._mn)
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
        # the next encryptions' h^r, computed in the idle pool while this party waits (production keys only)
        self._randomizers = IdleReserve(self._randomizer_task, public_key.width, cap=_RANDOMIZERS_MAX, chunk=512)

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
                self._engine = OwnerEngine(self._p, self._q, pk.g, pk.h, pk.plaintext_bits, pk.owner_r_bits)
            return self._engine

    # -------------------------------------------------- encryption (key owner)
    def _key_args(self) -> tuple:
        """The owner engine's arguments for this party's own pool workers (primes as ``KeyBytes``)."""
        pk, kb, w = self.public_key, _pool.KeyBytes, self.public_key.width
        return (kb(int(self._p).to_bytes(w, "big")), kb(int(self._q).to_bytes(w, "big")), pk._bytes[1],
                pk._bytes[2], pk.plaintext_bits, pk.owner_r_bits)

    def _randomizer_task(self, count: int) -> tuple:
        return _pool.w_ou_owner_randomizers, (*self._key_args(), int(count), self.public_key.width)

    def encrypt_ints(self, ints, *, parallel: bool | None = None) -> "CipherVector":
        """Encrypt integers as the key owner: ``g^m h^r`` with a short ``r`` (``owner_r_bits``), CRT over ``p^2`` and ``q``.

        ``parallel``: split over the party's process pool (None: from ``PARALLEL_MIN`` values with
        2048-bit or larger keys), like Paillier; the workers rebuild the CRT engine from key bytes
        that stay in the party's own pool (:mod:`fedcredit.crypto.pool`).

        With production-size keys and a local pool, each call then queues the next calls' ``h^r`` in
        the idle pool (:class:`fedcredit.crypto._reserve.IdleReserve`, up to the last three calls'
        counts): a SecureBoost guest's next tree finds most of its randomness computed while it waited
        for its hosts, and its encryption is then the ``g^m`` part only (about a third of the work).
        Each value is used once; what is not ready is drawn fresh here.
        """
        pk = self.public_key
        ms = pk._check_ints(ints)
        use_reserve = pk.bits >= _REFILL_MIN_BITS and parallel is not False
        hs = self._randomizers.take(len(ms)) if use_reserve else []
        if _par.use_parallel(len(ms), parallel, pk.bits):
            w = pk.width
            key = self._key_args()
            parts = _par.split(len(ms), _par.pool_size())
            k, share = len(parts), len(hs)  # each worker gets an equal share of the ready randomness
            hb = [b"".join(h.to_bytes(w, "big") for h in hs[i * share // k:(i + 1) * share // k]) for i in range(k)]
            res = _par.parallel_map(_pool.w_ou_owner_encrypt, [(*key, ms[lo:hi], w, hb[i])
                                                               for i, (lo, hi) in enumerate(parts)])
            fb, data = mpz.from_bytes, b"".join(res)
            cs = [fb(data[i : i + w], "big") for i in range(0, len(data), w)]
        else:
            cs = self._get_engine().encrypt(ms, hs)
        if use_reserve and len(ms) and _par.pool_size() >= 2:
            self._randomizers.refill(len(ms))
        return CipherVector._make(pk, _obj_array(cs), 0, fresh=True)

    def encrypt(self, x, *, frac_bits: int = DEFAULT_FRAC_BITS, parallel: bool | None = None) -> "CipherVector":
        """Encrypt floats in fixed point as the key owner."""
        cv = self.encrypt_ints(FixedPoint(frac_bits=frac_bits).encode(x))
        return CipherVector._make(self.public_key, cv._c, frac_bits, fresh=True)

    def obfuscate(self, cv: "CipherVector", *, parallel: bool | None = None) -> "CipherVector":
        """Re-randomize ``cv`` with fresh ``h^r`` (short ``r``, CRT), for vectors the owner itself sends on."""
        self._check_vector(cv)
        cs = self._get_engine().obfuscate(list(cv._c))
        return CipherVector._make(self.public_key, _obj_array(cs), cv.frac_bits, fresh=True)

    # -------------------------------------------------- decryption
    def _check_vector(self, cv) -> None:
        if not isinstance(cv, CipherVector) or cv.public_key != self.public_key:
            raise DecryptionError()

    def _decrypt_unchecked(self, cv: "CipherVector", parallel: bool | None = None) -> list[int]:
        """Residues ``m mod p`` with no plaintext guard (hazmat: never release these)."""
        self._check_vector(cv)
        n = self.public_key._mn
        check_units(cv._c, n, n)
        try:
            return [int(m) for m in self._get_engine().decrypt(list(cv._c), parallel)]
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
        parallel : bool or None
            Split the exponentiations over one thread per core (GIL-free; None: from 16 values).

        Raises
        ------
        DecryptionError
            Opaquely, if the vector is under another key, a ciphertext is invalid, or
            **any** value is at or above the bound (the key-recovery guard: nothing
            is returned, so a crafted plaintext ``>= p`` reveals no multiple of ``p``).
        """
        bound = self._bound(bound_bits)
        ms = self._decrypt_unchecked(cv, parallel)
        if any(m >= bound for m in ms):
            raise DecryptionError()
        return ms

    def decrypt_signed(self, cv: "CipherVector", *, bound_bits: int | None = None, parallel: bool | None = None) -> list[int]:
        """Decrypt to signed integers in ``(-2^bound_bits, 2^bound_bits)``, all or nothing (see :meth:`decrypt_ints`)."""
        bound = self._bound(bound_bits)
        p = self._p
        out = []
        for m in self._decrypt_unchecked(cv, parallel):
            if m < bound:
                out.append(m)
            elif m > p - bound:
                out.append(m - p)
            else:
                raise DecryptionError()
        return out

    def decrypt(self, cv: "CipherVector", *, bound_bits: int | None = None, parallel: bool | None = None) -> np.ndarray:
        """Decrypt a fixed-point vector to ``float64`` using its ``frac_bits`` (signed, guarded)."""
        vals = self.decrypt_signed(cv, bound_bits=bound_bits, parallel=parallel)
        try:
            return FixedPoint(frac_bits=cv.frac_bits).decode(vals)
        except (OverflowError, ValueError):
            raise DecryptionError() from None
