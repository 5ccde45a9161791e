"""Okamoto-Uchiyama cipher vectors: homomorphic operations, histograms, re-randomization, compression.

The skeleton (container, ``+``/``-``, ``sum``, ``concat``, ``to_blob``) is shared with
Paillier (:class:`fedcredit.crypto._vector.BaseCipherVector`); ciphertexts here live
modulo ``n``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import gmpy2
import numpy as np
from gmpy2 import mpz

from ...errors import ConfigError
from .. import _ou_heu
from .. import parallel as _par
from .. import pool as _pool
from .._ou_raw import bucket_sums, horner_pack
from .._raw import _obj_array
from .._vector import BaseCipherVector
from ..paillier.encoding import DEFAULT_FRAC_BITS, FixedPoint

__all__ = ["SCHEME", "CipherVector", "concat", "compress"]

SCHEME = "ou"
_MPZ = type(mpz(0))


class CipherVector(BaseCipherVector):
    """An immutable vector of OU ciphertexts under one public key (see the Paillier twin).

    Attributes
    ----------
    public_key : PublicKey
    frac_bits : int
        Fixed-point scale of the plaintexts (0 for integers).
    """

    __slots__ = ()
    SCHEME = SCHEME
    _REPR = "ou.CipherVector"
    _KIND = "an OU CipherVector"

    def _modulus(self):
        return self.public_key._mn

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
        kernel : {"auto", "gmpy2", "heu"}, default="gmpy2"
            ``"gmpy2"`` (and ``"auto"``): our grouped kernel,
            :func:`fedcredit.crypto._buckets.feature_bucket_sums` (always available; 1.47x
            SecretFlow HEU's C++ bucket sum on one quiet core, benchmarks/README.md, "Grouped
            bucket sums").  ``"heu"``: HEU's ``feature_wise_bucket_sum`` through
            :mod:`fedcredit.crypto._ou_heu` (``pip install fedcredit[heu]``; ConfigError if it
            is not importable, fails its self-check or fails), for machines where it measures
            faster.  All give identical ciphertexts.
        parallel : bool or None
            Split the rows over the party's process pool (None: when rows x features >=
            ``PARALLEL_MIN`` with 2048-bit or larger keys), as Paillier does; ``"heu"`` runs
            in this process.

        Returns
        -------
        CipherVector
            Length ``n_features * n_bins``, feature-major.
        """
        b = self._check_bins(bins, n_bins, check_n_bins=True)
        if kernel not in ("auto", "gmpy2", "heu"):
            raise ConfigError(
                f"The 'kernel' parameter of histogram must be 'auto', 'gmpy2' or 'heu'. Got {kernel!r} instead.")
        cs = self._c.tolist()
        pk = self.public_key
        if kernel == "heu" and len(cs):
            bridge = _ou_heu.bridge_for(pk.n, pk.g, pk.h, pk.plaintext_bits)
            if bridge is None:
                raise ConfigError("kernel='heu' needs sf-heu (pip install fedcredit[heu]) and a passing self-check")
            try:
                out = bridge.bucket_sums(cs, b, int(n_bins))
            except Exception:
                out = None
            if out is None or len(out) != b.shape[1] * int(n_bins):
                raise ConfigError("the HEU bucket sum failed; use kernel='gmpy2'")
        elif _par.use_parallel(b.size, parallel, pk.bits) and len(cs) >= 2:
            # rows split over the party's process pool; the partial sums multiply together
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
            out = bucket_sums(cs, b, int(n_bins), pk._mn)
        return self._derived(_obj_array(out))

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


def concat(vectors: Iterable[CipherVector]) -> CipherVector:
    """Concatenate vectors under one key (scales aligned up to the largest)."""
    return CipherVector._concat(vectors)


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
