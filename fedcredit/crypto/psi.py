"""Group primitives for ECDH private set intersection.

A PSI party hashes each of its (normalized) ids to a group element ``H(x)``
and raises it to a secret scalar ``k`` that never leaves the party; because
exponentiation commutes, ``(H(x)^a)^b == (H(x)^b)^a`` and two parties can
compare doubly blinded sets without seeing each other's ids. This module holds
the group arithmetic; the message flow is in :mod:`fedcredit.protocols.psi`.

Two groups are offered, both of prime order and both computed by libsodium:

``"curve25519"`` (default)
    The prime-order subgroup (order ``L = 2^252 + 27742317777372353535851937790883648493``)
    of Curve25519, points encoded as their 32-byte X25519 u-coordinate.
    Exponentiation is libsodium's X25519 (``crypto_scalarmult`` through PyNaCl).
    Hashing: SHA-512 of a domain-separated input, reduced mod ``p = 2^255 - 19``,
    with try-and-increment until the u-coordinate is on the curve (never on its
    twist, so the encoding leaks no "curve or twist" bit); the cofactor 8 is
    cleared by X25519's scalar clamping, so every value that goes on the wire
    lies in the order-``L`` subgroup. The resulting hash is uniform over curve
    points up to sign. Peer points are checked to lie on the curve (not the
    twist) and not to be of small order before they are used.
``"ristretto255"``
    The ristretto255 group (RFC 9496) through libsodium's
    ``crypto_core_ristretto255_from_hash`` / ``crypto_scalarmult_ristretto255``
    (the system ``libsodium`` >= 1.0.18 loaded with ctypes; PyNaCl does not bind
    these functions). A cleaner abstraction (canonical encodings, no cofactor,
    uniform constant-time hash), but measured about 1.6x slower per
    exponentiation on the reference machine, which misses the 1M x 1M target;
    see ``docs/psi.md`` for the numbers.

Security notes
--------------
* Scalars come from :mod:`secrets`, are fresh per job (a new :class:`PSIKey`
  per run), are never serialized, and their ``repr`` is redacted.
* The try-and-increment hash and the on-curve check run in Python/gmpy2 and
  are not constant-time; their timing depends on the party's *own* ids and is
  observable only on that party's machine (a peer sees the total time per
  chunk of tens of thousands of ids).
* The model is semi-honest (honest but curious) parties; malformed points are
  rejected, but a malicious party can always lie about its own set.

Compute backend
---------------
Calls of :data:`PARALLEL_MIN_POINTS` points or more (one PSI message chunk)
are split over the party's compute backend (:mod:`fedcredit.compute`: its
local process pool, or its own Dask cluster) when it has two workers or more.
Workers receive the scalar as :class:`~fedcredit.crypto.pool.KeyBytes`
(redacted ``repr``) inside the party's own trust boundary, exactly like the
Paillier key owner's primes; the result is byte-identical to the in-process
computation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import gmpy2
import numpy as np
import nacl.bindings  # noqa: F401 - runs sodium_init, which picks libsodium's fastest X25519 code
from nacl._sodium import ffi as _ffi, lib as _lib  # PyNaCl's own cffi handle on its bundled libsodium

from ..errors import ConfigError, DataError, ProtocolError

__all__ = [
    "POINT_BYTES",
    "PARALLEL_MIN_POINTS",
    "GROUPS",
    "Group",
    "PSIKey",
    "get_group",
    "normalize_id",
    "normalize_ids",
    "match_points",
    "secure_permutation",
]

POINT_BYTES = 32
DOMAIN = b"fedcredit/psi/v1"

_P = (1 << 255) - 19
_A = 486662
_P_MPZ = gmpy2.mpz(_P)


def normalize_id(value) -> str:
    """Normalize one id before hashing: ``str(value).strip().casefold()``.

    Surrounding whitespace is removed and case is folded (``casefold`` is the
    Unicode-aware ``lower``: ``"ß"`` → ``"ss"``). No other rewriting is done:
    inner spaces, dashes and leading zeros are significant.
    """
    return str(value).strip().casefold()


def normalize_ids(ids: Iterable, *, source: str = "<ids>") -> list[bytes]:
    """Normalize ids and encode them as UTF-8; refuse duplicates and empty ids.

    Parameters
    ----------
    ids : iterable of str
        One party's ids, in row order.
    source : str
        Names the party and file in error messages.

    Returns
    -------
    list of bytes
        Normalized ids, in row order.

    Raises
    ------
    DataError
        Two rows have the same id after normalization, or an id is empty.
    """
    out = [normalize_id(x).encode("utf-8") for x in ids]
    if len(set(out)) != len(out):
        seen: dict[bytes, int] = {}
        for i, x in enumerate(out):
            if x in seen:
                raise DataError(
                    f"{source}: duplicate id after normalization (strip + casefold): "
                    f"{x.decode('utf-8')!r} at rows {seen[x]} and {i}; PSI needs unique ids"
                )
            seen[x] = i
    if b"" in out:
        raise DataError(f"{source}: empty id at row {out.index(b'')}; PSI needs non-empty ids")
    return out


class PSIKey:
    """A party's secret PSI scalar for one job. Never serialized, never printed.

    Parameters
    ----------
    group : Group
        The group the scalar belongs to.
    """

    __slots__ = ("_secret", "group_name")

    def __init__(self, group: "Group"):
        self.group_name = group.name
        self._secret = group._random_scalar()

    def __repr__(self) -> str:
        return f"PSIKey(group={self.group_name!r}, secret=<redacted>)"

    def __reduce__(self):
        raise TypeError("a PSIKey is secret and cannot be pickled or copied to another process")

    def destroy(self) -> None:
        """Drop the reference to the scalar (best effort in Python)."""
        self._secret = None


def _chunks(points: bytes) -> list[bytes]:
    if len(points) % POINT_BYTES:
        raise ProtocolError(f"point data of {len(points)} bytes is not a whole number of {POINT_BYTES}-byte points")
    mv = memoryview(points)
    return [bytes(mv[i : i + POINT_BYTES]) for i in range(0, len(points), POINT_BYTES)]


class Group(ABC):
    """A prime-order group for ECDH-PSI, with 32-byte encodings.

    Subclasses implement :meth:`hash_points` (ids → points, unblinded, kept
    local) and :meth:`exp` (raise points to the key); :meth:`blind` does both.
    """

    name: str = ""

    def new_key(self) -> PSIKey:
        """A fresh secret scalar for one job."""
        return PSIKey(self)

    @abstractmethod
    def _random_scalar(self) -> bytes: ...

    @abstractmethod
    def hash_points(self, ids: Sequence[bytes], salt: bytes) -> list[bytes]:
        """Hash normalized ids to points (not blinded: never send these)."""

    @abstractmethod
    def _exp(self, secret: bytes, points: list[bytes], *, peer: bool) -> bytes:
        """Raise each point to ``secret``; concatenated results."""

    def _secret(self, key: PSIKey) -> bytes:
        if key.group_name != self.name or key._secret is None:
            raise ConfigError(f"PSI key for group {key.group_name!r} used with group {self.name!r} (or destroyed)")
        return key._secret

    def blind(self, key: PSIKey, ids: Sequence[bytes], salt: bytes, *, parallel: bool | None = None) -> bytes:
        """``H(x)^k`` for each id, concatenated (``len(ids) * 32`` bytes).

        ``parallel``: None splits calls of :data:`PARALLEL_MIN_POINTS` ids or
        more over the compute backend; True/False force the choice.
        """
        secret = self._secret(key)
        parts = _parts(len(ids), parallel)
        if len(parts) > 1:
            from .parallel import parallel_map
            from .pool import KeyBytes

            res = parallel_map(w_blind, [(self.name, KeyBytes(secret), list(ids[lo:hi]), salt) for lo, hi in parts])
            return b"".join(res)
        return self._exp(secret, self.hash_points(ids, salt), peer=False)

    def exp(self, key: PSIKey, points: bytes, *, parallel: bool | None = None) -> bytes:
        """Raise a peer's concatenated points to ``key``; rejects invalid points.

        Raises
        ------
        ProtocolError
            The data is not whole points, or a point is not a valid element
            of the group (wrong curve, small order, non-canonical).
        """
        secret = self._secret(key)
        if len(points) % POINT_BYTES:
            _chunks(points)  # raises the ProtocolError
        parts = _parts(len(points) // POINT_BYTES, parallel)
        if len(parts) > 1:
            from .parallel import parallel_map
            from .pool import KeyBytes

            res = parallel_map(w_exp, [(self.name, KeyBytes(secret), points[lo * POINT_BYTES : hi * POINT_BYTES])
                                       for lo, hi in parts])
            bad = next((err for err, _ in res if err), None)
            if bad:
                raise ProtocolError(bad)
            return b"".join(out for _, out in res)
        return self._exp(secret, _chunks(points), peer=True)


class Curve25519Group(Group):
    """Prime-order subgroup of Curve25519 with X25519 exponentiation (libsodium via PyNaCl)."""

    name = "curve25519"

    def _random_scalar(self) -> bytes:
        # X25519 clamps: bit 254 set, low 3 bits cleared (clears the cofactor).
        return secrets.token_bytes(32)

    def hash_points(self, ids: Sequence[bytes], salt: bytes) -> list[bytes]:
        prefix = hashlib.sha512(DOMAIN + b"/curve25519/hash-to-curve/" + len(salt).to_bytes(2, "big") + salt)
        out = []
        legendre, p, A = gmpy2.legendre, _P_MPZ, _A
        for x in ids:
            h = prefix.copy()
            h.update(x)
            d = h.digest()
            ctr = 0
            while True:
                u = int.from_bytes(d, "little") % _P
                if u > 1 and legendre((u * u + A * u + 1) * u, p) == 1:
                    break
                ctr += 1  # about half of all u-coordinates are on the twist: try the next
                d = hashlib.sha512(d + ctr.to_bytes(4, "big")).digest()
            out.append(u.to_bytes(32, "little"))
        return out

    def _exp(self, secret: bytes, points: list[bytes], *, peer: bool) -> bytes:
        if peer:
            legendre, p, A = gmpy2.legendre, _P_MPZ, _A
            for pt in points:
                u = int.from_bytes(pt, "little")
                if u >= _P or legendre((u * u + A * u + 1) * u, p) != 1:
                    raise ProtocolError("PSI: peer sent a value that is not a point of Curve25519 (twist or non-canonical)")
        # libsodium's crypto_scalarmult (X25519) straight through PyNaCl's cffi handle, into one
        # buffer: the same function nacl.bindings.crypto_scalarmult wraps, without a Python
        # wrapper and a small bytes object per point. It returns -1 for a small-order point.
        n = len(points)
        out = _ffi.new("unsigned char[]", POINT_BYTES * n) if n else b""
        f = _lib.crypto_scalarmult
        for i, pt in enumerate(points):
            if f(out + POINT_BYTES * i, secret, pt) != 0:
                raise ProtocolError("PSI: a point of small order (from a peer, or a hash with odds 2^-250)")
        return _ffi.buffer(out)[:] if n else b""


class _Sodium:
    """The system libsodium's ristretto255 functions through ctypes (loaded on first use)."""

    _lib = None

    @classmethod
    def lib(cls):
        if cls._lib is None:
            name = ctypes.util.find_library("sodium")
            if name is None:
                raise ConfigError("PSI group 'ristretto255' needs the system libsodium (>= 1.0.18); it was not found")
            lib = ctypes.CDLL(name)
            if lib.sodium_init() < 0 or not hasattr(lib, "crypto_scalarmult_ristretto255"):
                raise ConfigError(f"PSI group 'ristretto255': {name} has no ristretto255 functions (need libsodium >= 1.0.18)")
            cls._lib = lib
        return cls._lib


class Ristretto255Group(Group):
    """ristretto255 (RFC 9496) from the system libsodium."""

    name = "ristretto255"

    def _random_scalar(self) -> bytes:
        lib = _Sodium.lib()
        buf = ctypes.create_string_buffer(32)
        lib.crypto_core_ristretto255_scalar_random(buf)
        return buf.raw

    def hash_points(self, ids: Sequence[bytes], salt: bytes) -> list[bytes]:
        lib = _Sodium.lib()
        prefix = hashlib.sha512(DOMAIN + b"/ristretto255/hash-to-group/" + len(salt).to_bytes(2, "big") + salt)
        buf = ctypes.create_string_buffer(32)
        out = []
        f = lib.crypto_core_ristretto255_from_hash
        for x in ids:
            h = prefix.copy()
            h.update(x)
            f(buf, h.digest())
            out.append(buf.raw)
        return out

    def _exp(self, secret: bytes, points: list[bytes], *, peer: bool) -> bytes:
        lib = _Sodium.lib()
        f = lib.crypto_scalarmult_ristretto255
        buf = ctypes.create_string_buffer(32)
        out = []
        for pt in points:
            # libsodium rejects non-canonical encodings and the identity (returns -1).
            if f(buf, secret, pt) != 0:
                raise ProtocolError("PSI: peer sent a value that is not a valid ristretto255 element")
            out.append(buf.raw)
        return b"".join(out)


GROUPS: dict[str, type[Group]] = {"curve25519": Curve25519Group, "ristretto255": Ristretto255Group}

#: Calls with at least this many points go to the compute backend (one PSI message chunk).
PARALLEL_MIN_POINTS = 32768


def _parts(count: int, parallel: bool | None) -> list[tuple[int, int]]:
    """Ranges of one blind/exp call per worker, or one range when it runs in-process."""
    from . import parallel as _par

    if parallel is False or count < 2 or (parallel is None and count < PARALLEL_MIN_POINTS):
        return [(0, count)]
    workers = _par.pool_size()
    return _par.split(count, workers) if workers >= 2 else [(0, count)]


def w_blind(group: str, secret: bytes, ids: list, salt: bytes) -> bytes:
    """Compute-backend task: ``H(x)^k`` for a slice of ids (see :meth:`Group.blind`)."""
    grp = get_group(group)
    return grp._exp(bytes(secret), grp.hash_points(ids, salt), peer=False)


def w_exp(group: str, secret: bytes, points: bytes) -> tuple[str | None, bytes]:
    """Compute-backend task: a slice of a peer's points raised to ``k``; ``(error, b"")`` for an invalid point.

    The error comes back as a value rather than an exception so that every
    backend reports the peer's fault as the same ProtocolError.
    """
    try:
        return None, get_group(group)._exp(bytes(secret), _chunks(points), peer=True)
    except ProtocolError as exc:
        return str(exc), b""


def get_group(name: str) -> Group:
    """The group called ``name`` (``"curve25519"`` or ``"ristretto255"``)."""
    try:
        return GROUPS[name]()
    except KeyError:
        raise ConfigError(f"unknown PSI group {name!r}; choose one of {', '.join(GROUPS)}") from None


def _keys(points: bytes) -> np.ndarray:
    """View concatenated 32-byte points as an (n, 4) uint64 array."""
    return np.frombuffer(points, dtype="<u8").reshape(-1, 4)


def match_points(mine: bytes, theirs: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Positions of equal points in two concatenated point lists.

    Parameters
    ----------
    mine, theirs : bytes
        Concatenated 32-byte points (``n * 32`` and ``m * 32`` bytes).

    Returns
    -------
    i, j : ndarray of int64
        ``mine[i[t]] == theirs[j[t]]`` for every ``t``; ``i`` is increasing.

    Notes
    -----
    Sorts ``theirs`` by its first 8 bytes and binary-searches ``mine``, then
    confirms all 32 bytes; if two of ``theirs`` share an 8-byte prefix (odds
    about ``m^2 / 2^65``) it falls back to an exact dictionary match.
    """
    a, b = _keys(mine), _keys(theirs)
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(b[:, 0], kind="stable")
    sb = b[order, 0]
    if len(sb) > 1 and np.any(sb[1:] == sb[:-1]):
        lookup = {bytes(theirs[k * POINT_BYTES : (k + 1) * POINT_BYTES]): k for k in range(len(b))}
        pairs = [(i, lookup.get(bytes(mine[i * POINT_BYTES : (i + 1) * POINT_BYTES]), -1)) for i in range(len(a))]
        i = np.array([p for p, q in pairs if q >= 0], dtype=np.int64)
        j = np.array([q for p, q in pairs if q >= 0], dtype=np.int64)
        return i, j
    pos = np.searchsorted(sb, a[:, 0])
    pos[pos == len(sb)] = 0
    cand = order[pos]
    hit = np.all(b[cand] == a, axis=1)
    i = np.nonzero(hit)[0].astype(np.int64)
    return i, cand[hit].astype(np.int64)


def secure_permutation(n: int, seed: bytes | None = None) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` from cryptographic randomness.

    Sorts ``n`` random 64-bit keys (ties, with odds about ``n^2 / 2^65``, keep
    index order). The keys come from :func:`secrets.token_bytes`, or, when
    ``seed`` is given, from SHAKE-256 of the seed (so parties that share a
    secret seed draw the same permutation).
    """
    if n == 0:
        return np.empty(0, np.int64)
    if seed is None:
        raw = secrets.token_bytes(8 * n)
    else:
        raw = hashlib.shake_256(DOMAIN + b"/permutation/" + seed).digest(8 * n)
    keys = np.frombuffer(raw, dtype="<u8")
    return np.argsort(keys, kind="stable").astype(np.int64)
