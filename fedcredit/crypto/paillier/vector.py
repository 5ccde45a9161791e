"""Paillier cipher vectors: homomorphic operations, histograms, re-randomization and the wire form.

The skeleton (container, ``+``/``-``, ``sum``, ``concat``, ``to_blob``) is shared with
Okamoto-Uchiyama (:class:`fedcredit.crypto._vector.BaseCipherVector`); what is Paillier's
is here: plaintexts mod ``n`` in ciphertexts mod ``n^2``, the histogram kernel, and the
two obfuscators whose use the package docstring justifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz, powmod

from ...errors import ConfigError
from .. import parallel as _par
from .. import pool as _pool
from .._buckets import feature_bucket_sums
from .._raw import _obj_array, bytes_to_ints, group_sum, ints_to_bytes
from .._vector import BaseCipherVector
from .encoding import DEFAULT_FRAC_BITS, FixedPoint

__all__ = ["SCHEME", "CipherVector", "concat"]

SCHEME = "paillier"

_MPZ = type(mpz(0))
# A uniform obfuscator (full exponentiation) costs ~60 fixed-base ones: send to the pool sooner.
_UNIFORM_WEIGHT = 32


class CipherVector(BaseCipherVector):
    """An immutable vector of Paillier ciphertexts under one public key.

    Build one with ``PublicKey.encrypt*``, ``PrivateKey.encrypt*`` or
    :meth:`PublicKey.vector_from_blob`.  Operations return new vectors; the
    container, ``+``/``-``, ``sum``, ``concat`` and ``to_blob`` are
    :class:`~fedcredit.crypto._vector.BaseCipherVector`'s.
    """

    __slots__ = ()
    SCHEME = SCHEME

    def _modulus(self):
        return self.public_key._mnsq

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
        """Per-feature bin sums: :meth:`group_sum` for every column of ``bins`` (one kernel,
        :func:`fedcredit.crypto._buckets.feature_bucket_sums`, shared with OU).

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
        b = self._check_bins(bins, n_bins)
        n_bins = int(n_bins)
        nsq = self.public_key._mnsq
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
        return self._derived(_obj_array(feature_bucket_sums(self._c, b, n_bins, nsq)))

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
    def from_phe(cls, public_key, numbers: Sequence) -> "CipherVector":
        """From ``phe.EncryptedNumber`` objects with exponent 0 under ``public_key`` (a :class:`PublicKey`)."""
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
    return CipherVector._concat(vectors)
