"""The skeleton the additive schemes' cipher vectors share (Paillier and Okamoto-Uchiyama).

Both are immutable object arrays of ``gmpy2.mpz`` ciphertexts under one public key,
with a fixed-point scale, a *fresh* flag and a cached wire blob; addition is a
product of ciphertexts, negation an inverse, and :meth:`BaseCipherVector.to_blob`
re-randomizes anything not fresh before it leaves the process (the key owner must
not learn how a sum was formed). What differs per scheme lives in the subclass:
the ciphertext modulus (``n^2`` for Paillier, ``n`` for OU), how plaintexts are
checked and multiplied in, the histogram kernel and the obfuscators.
"""

from __future__ import annotations

from collections.abc import Iterable

import gmpy2
import numpy as np
from gmpy2 import mpz

from ..errors import ConfigError
from ._raw import _obj_array, _reduce_product, ints_to_bytes, mul_pairs
from .blob import CipherBlob

__all__ = ["BaseCipherVector"]


class BaseCipherVector:
    """An immutable vector of additively homomorphic ciphertexts under one public key.

    Subclasses set :attr:`SCHEME`, :attr:`_REPR` and :attr:`_KIND`, and implement
    :meth:`_modulus`, :meth:`mul_plain`, :meth:`obfuscate` and :meth:`histogram`.

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
    #: Scheme name on the wire (``CipherBlob.scheme``).
    SCHEME = ""
    _REPR = "CipherVector"  # name in repr
    _KIND = "a CipherVector"  # name in type errors

    def __init__(self, *args, **kwargs):
        raise TypeError("create CipherVectors with PublicKey/PrivateKey.encrypt* or PublicKey.vector_from_blob")

    @classmethod
    def _make(cls, pk, cs: np.ndarray, frac_bits: int, *, fresh: bool):
        self = object.__new__(cls)
        self.public_key = pk
        self._c = cs
        self.frac_bits = int(frac_bits)
        self._fresh = fresh
        self._blob = None
        return self

    def _derived(self, cs, frac_bits=None):
        return type(self)._make(self.public_key, cs, self.frac_bits if frac_bits is None else frac_bits, fresh=False)

    def _modulus(self):
        """The ciphertext modulus (``mpz``)."""
        raise NotImplementedError

    # -------------------------------------------------- container protocol
    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for CipherVector of length {len(self)}")
            i %= len(self)
            sel = self._c[i : i + 1]
        else:
            sel = self._c[idx]
        return type(self)._make(self.public_key, np.asarray(sel, dtype=object).reshape(-1), self.frac_bits,
                                fresh=self._fresh)

    def __repr__(self) -> str:
        return f"{self._REPR}(len={len(self)}, frac_bits={self.frac_bits}, key={self.public_key.fingerprint[:4].hex()})"

    def __iter__(self):
        raise TypeError("iterate over a CipherVector by indexing (cv[i]) - it has no scalar element type")

    def ciphertexts(self) -> list[int]:
        """The raw ciphertext integers (hazmat: not re-randomized)."""
        return [int(c) for c in self._c]

    def raw_ints(self) -> np.ndarray:
        """The ciphertexts as a read-only object array of ``gmpy2.mpz``, without copying (hazmat).

        For homomorphic kernels outside this module; they return their results through
        ``PublicKey.vector_from_raw``, which marks them for re-randomization before export.
        """
        v = self._c.view()
        v.flags.writeable = False
        return v

    # -------------------------------------------------- helpers
    def _check_same_key(self, other) -> None:
        if not isinstance(other, type(self)):
            raise TypeError(f"expected {self._KIND}, got {type(other).__name__}")
        if other.public_key != self.public_key:
            raise ConfigError("CipherVectors under different public keys")

    @staticmethod
    def _broadcast(a, b):
        if len(a) == len(b) or len(a) == 1 or len(b) == 1:
            return a, b
        raise ConfigError(f"length mismatch: {len(a)} vs {len(b)}")

    def _rescaled(self, frac_bits: int):
        """This vector at the larger scale ``frac_bits`` (exact: multiply by ``2^d``)."""
        v = self.mul_plain(1 << (frac_bits - self.frac_bits))
        return v._derived(v._c, frac_bits)

    def _aligned(self, other):
        """Both operands at the larger scale."""
        a, b = self, other
        if a.frac_bits < b.frac_bits:
            a = a._rescaled(b.frac_bits)
        elif b.frac_bits < a.frac_bits:
            b = b._rescaled(a.frac_bits)
        return a, b

    def _check_bins(self, bins, n_bins, *, check_n_bins: bool = False) -> np.ndarray:
        """``bins`` as an array of shape ``(len(self), f)`` of integer codes in ``[0, n_bins)`` (for ``histogram``)."""
        b = np.asarray(bins)
        if b.ndim != 2:
            raise ConfigError(f"bins must be 2-D (rows, features), got shape {b.shape}")
        if b.dtype.kind not in "iu":
            raise ConfigError(f"bins must be integers, got dtype {b.dtype}")
        if b.shape[0] != len(self):
            raise ConfigError(f"bins have {b.shape[0]} rows, vector {len(self)}")
        if check_n_bins and (isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1):
            raise ConfigError(f"The 'n_bins' parameter of histogram must be an int >= 1. Got {n_bins!r} instead.")
        if b.size and (b.min() < 0 or b.max() >= n_bins):
            raise ConfigError(f"bin ids must be in [0, {n_bins})")
        return b

    # -------------------------------------------------- homomorphic ops
    def mul_plain(self, values, *, frac_bits: int | None = None):
        raise NotImplementedError

    def __add__(self, other):
        """Elementwise ciphertext addition (``E(a) E(b)`` mod the ciphertext modulus)."""
        if not isinstance(other, type(self)):
            return NotImplemented
        self._check_same_key(other)
        a, b = self._aligned(other)
        x, y = self._broadcast(a._c, b._c)
        m = self._modulus()
        if len(x) == len(y):
            return a._derived(_obj_array(mul_pairs(x, y, m)))
        return a._derived(x * y % m)

    def __neg__(self):
        m = self._modulus()
        return self._derived(_obj_array([gmpy2.invert(c, m) for c in self._c]))

    def __sub__(self, other):
        """Elementwise difference (histogram subtraction): ``E(a) E(b)^-1``."""
        if not isinstance(other, type(self)):
            return NotImplemented
        self._check_same_key(other)
        return self + (-other)

    def dot(self, values, *, frac_bits: int | None = None):
        """``sum_i E(x_i) * w_i`` as a length-1 vector (``mul_plain`` then ``sum``)."""
        return self.mul_plain(values, frac_bits=frac_bits).sum()

    def sum(self):
        """Sum of all elements as a length-1 vector (``E(0) = 1`` when empty)."""
        if len(self) == 0:
            return self._derived(_obj_array([mpz(1)]))
        return self._derived(_obj_array([_reduce_product(self._c, self._modulus())]))

    def concat(self, *others):
        """This vector followed by ``others`` (same key; scales aligned up to the largest)."""
        return type(self)._concat([self, *others])

    @classmethod
    def _concat(cls, vectors: Iterable):
        vs = list(vectors)
        if not vs:
            raise ConfigError("concat needs at least one CipherVector")
        first = vs[0]
        if not isinstance(first, cls):
            raise TypeError(f"expected {cls._KIND}, got {type(first).__name__}")
        for v in vs[1:]:
            first._check_same_key(v)
        fb = max(v.frac_bits for v in vs)
        parts = [(v if v.frac_bits == fb else v._rescaled(fb))._c for v in vs]
        return cls._make(first.public_key, np.concatenate(parts), fb, fresh=all(v._fresh for v in vs))

    # -------------------------------------------------- randomness / wire
    def obfuscate(self, *, parallel: bool | None = None, for_key_owner: bool = True):
        raise NotImplementedError

    @property
    def is_fresh(self) -> bool:
        """True if every ciphertext was freshly encrypted or re-randomized by this process."""
        return self._fresh

    def to_blob(self) -> CipherBlob:
        """Fixed-width big-endian ciphertexts (``public_key.width`` bytes each) with the key fingerprint and scale.

        Vectors derived from homomorphic operations (or received from a peer) are
        re-randomized first, with ``obfuscate(for_key_owner=True)``: the recipient is
        unknown here and may be the key owner. The result is cached (the vector is immutable).
        """
        if self._blob is None:
            v = self if self._fresh else self.obfuscate()
            pk = self.public_key
            self._blob = CipherBlob(
                scheme=self.SCHEME,
                key_fingerprint=pk.fingerprint,
                width=pk.width,
                count=len(v),
                data=ints_to_bytes(v._c, pk.width),
                meta={"frac_bits": self.frac_bits},
            )
        return self._blob
