"""Per-row Paillier or OU ciphertexts kept partitioned on a backend's workers, and histograms over them.

With a distributed backend the SecureBoost host does not turn the guest's
``(g, h)`` ciphertexts into one in-process vector. It splits the received
bytes into row ranges once per tree, together with the bin codes of the same
rows (``scatter``), and every node's histogram is one small task per partition
that receives only the node's row positions in that partition and returns
that partition's per-(feature, bin) partial sums. The host multiplies the
partial sums (homomorphic addition), which gives exactly the integers the
in-process path computes: a histogram bin is the product mod ``n^2`` (Paillier)
or ``n`` (OU) of the same ciphertexts, and that product does not depend on the
grouping or order. Both schemes run here through one kernel
(:func:`fedcredit.crypto._buckets.feature_bucket_sums`); the workers learn only
the scheme and the public ``n``.

The bytes may arrive in parts (the SecureBoost guest streams a tree's
``(g, h)`` in bounded messages): :meth:`PartitionedCipherVector.from_blobs`
scatters each partition as soon as its rows have arrived, so no part is
joined with the others into one large buffer.

What the workers see: ciphertexts under the guest's key and this party's own
bin codes and row positions -- nothing they could not already see in the
party process. What stays in the party process: the received bytes (the
source to scatter a partition again if its worker dies) and the histograms.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from .._executor import Executor, PartitionLost, current
from ..errors import ComputeError, ConfigError, DecryptionError
from .blob import CipherBlob

__all__ = ["PartitionedCipherVector", "DEFAULT_PARTITION_ROWS", "w_check", "w_histograms", "w_encrypt_partition"]

#: Rows per partition (at least one partition per worker).
DEFAULT_PARTITION_ROWS = 100_000
_MAX_RELOADS = 3


class PartitionedCipherVector:
    """A ciphertext vector whose elements (with per-row bin codes) live in partitions on workers.

    Build one with :meth:`from_blob`; use :meth:`histograms`; call :meth:`free`
    (or use it as a context manager) when the tree is done.

    Attributes
    ----------
    public_key : PublicKey
    frac_bits : int
    bounds : list of (int, int)
        Row range of each partition.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("create a PartitionedCipherVector with PartitionedCipherVector.from_blob")

    @classmethod
    def from_blob(cls, public_key, blob: CipherBlob, codes: np.ndarray, *, backend: Executor | None = None,
                  partition_rows: int | None = None, validate: bool = True) -> "PartitionedCipherVector":
        """Scatter a received ciphertext blob and the bin codes of the same rows.

        Parameters
        ----------
        public_key : PublicKey
            The key the blob must be under.
        blob : CipherBlob
            One ciphertext per row.
        codes : ndarray of shape (len(blob), f), integer
            This party's bin codes of the same rows.
        backend : Executor, optional
            The party's compute backend; default: the current one (:func:`fedcredit._executor.current`).
        partition_rows : int, optional
            Rows per partition (default: the backend's ``partition_rows``); there
            are at least as many partitions as workers.
        validate : bool, default=True
            Check every ciphertext on the workers (``0 < c < n^2`` for Paillier, ``< n`` for OU; a
            unit), as :meth:`PublicKey.vector_from_blob` does in-process.

        Raises
        ------
        DecryptionError
            Opaquely, if the blob is not a vector under ``public_key`` or holds an invalid ciphertext.
        """
        _check_header(public_key, blob)
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != blob.count:
            raise ConfigError(f"codes must have shape ({blob.count}, f), got {codes.shape}")
        return cls.from_blobs(public_key, [blob], codes, backend=backend, partition_rows=partition_rows,
                              validate=validate)

    @classmethod
    def from_blobs(cls, public_key, blobs, codes: np.ndarray, *, backend: Executor | None = None,
                   partition_rows: int | None = None, validate: bool = True) -> "PartitionedCipherVector":
        """Scatter a ciphertext vector that arrives in consecutive parts, as the parts arrive.

        The partitions are the same row ranges :meth:`from_blob` would cut from the whole vector
        (so the sums are the same); each is scattered as soon as its last row has arrived, taking
        its bytes from one or two received parts. No part is joined with the others: this process
        holds the received parts (to scatter a lost partition again) and at most one partition's
        copy in flight per worker.

        Parameters
        ----------
        public_key : PublicKey
        blobs : iterable of CipherBlob
            The parts in row order (e.g. a generator that receives and checks each part); every
            part under ``public_key`` with the same ``frac_bits``. The parts' counts must add up
            to ``len(codes)``.
        codes : ndarray of shape (n, f), integer
            Bin codes of all ``n`` rows.
        backend, partition_rows, validate
            As in :meth:`from_blob`.

        Raises
        ------
        DecryptionError
            Opaquely, if a part is not a vector under ``public_key`` or holds an invalid ciphertext.
        ConfigError
            If the parts hold more or fewer ciphertexts than ``codes`` has rows, or differ in ``frac_bits``.
        """
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise ConfigError(f"codes must have shape (n, f), got {codes.shape}")
        if codes.dtype.kind not in "iu":
            raise ConfigError(f"codes must be integers, got dtype {codes.dtype}")
        backend = backend if backend is not None else current()
        partition_rows = backend.partition_rows if partition_rows is None else partition_rows
        if isinstance(partition_rows, bool) or not isinstance(partition_rows, int) or partition_rows < 1:
            raise ConfigError(f"The 'partition_rows' parameter must be an int >= 1. Got {partition_rows!r} instead.")
        self = object.__new__(cls)
        self.backend = backend
        self.public_key = public_key
        self.frac_bits = None
        self.count = int(codes.shape[0])
        self._parts, self._part_starts = [], []
        self._codes = codes
        self._width = public_key.width
        n_parts = max(1, min(self.count, max(self.backend.n_workers, math.ceil(self.count / partition_rows))))
        edges = np.linspace(0, self.count, n_parts + 1).astype(np.int64)
        self.bounds = [(int(edges[i]), int(edges[i + 1])) for i in range(n_parts)]
        self._starts = edges[:-1]
        self._handles: list = []
        # scatter a few partitions at a time: their bytes are copies, so this bounds the extra memory here
        step = max(1, self.backend.n_workers)
        ready, received = 0, 0  # partitions scattered, rows received

        def flush(upto: int) -> None:
            nonlocal ready
            while ready < upto:
                hi = min(upto, ready + step)
                self._handles += self.backend.scatter([self._source(i) for i in range(ready, hi)])
                ready = hi

        try:
            for blob in blobs:
                _check_header(public_key, blob)
                fb = int(blob.meta.get("frac_bits", 0))
                if self.frac_bits is None:
                    self.frac_bits = fb
                elif fb != self.frac_bits:
                    raise ConfigError("the parts of a ciphertext vector differ in frac_bits")
                if received + blob.count > self.count:
                    raise ConfigError(f"the parts hold more than the {self.count} ciphertexts codes has rows for")
                if blob.count:
                    self._parts.append(blob.data)
                    self._part_starts.append(received)
                    received += int(blob.count)
                flush(sum(1 for _, hi in self.bounds[ready:] if hi <= received) + ready)
            if received != self.count:
                raise ConfigError(f"the parts hold {received} ciphertexts, codes has {self.count} rows")
            flush(n_parts)  # includes the one empty partition of an empty vector
            if self.frac_bits is None:
                self.frac_bits = 0
            if validate:
                self._run(w_check, public_key.to_wire()["n"], _scheme(public_key), part_args=None)
        except BaseException:
            self.free()
            raise
        return self

    @classmethod
    def encrypt_chunks(cls, key, chunks, *, backend: Executor | None = None) -> "PartitionedCipherVector":
        """Encrypt on the workers, one partition per chunk, without gathering the ciphertexts here.

        Parameters
        ----------
        key : PrivateKey or PublicKey
            The key owner's (CRT fast path) or a public key.
        chunks : iterable of (ints, codes)
            Per chunk: plaintext integers in ``[-n/2, n)`` (negatives encode as ``n + v``, as
            :meth:`PublicKey.encrypt_ints`) and the bin codes of the same rows
            (e.g. from :func:`fedcredit.data.iter_table`); one chunk is in this process at a time.
        backend : Executor, optional

        Notes
        -----
        Each chunk becomes one partition per worker. Each task carries its plaintexts as fixed-width bytes; a distributed
        engine keeps them with the task so it can recompute a partition whose worker
        died (with fresh randomness: the plaintexts are the same).
        """
        backend = backend if backend is not None else current()
        pk = getattr(key, "public_key", key)
        if _scheme(pk) != "paillier":
            raise ConfigError("encrypt_chunks encrypts under Paillier keys only (an OU vector arrives with from_blobs)")
        owner = key is not pk
        pw = (pk.bits + 7) // 8
        self = object.__new__(cls)
        self.backend, self.public_key, self.frac_bits = backend, pk, 0
        self._parts, self._part_starts, self._width = None, None, pk.width
        self._handles, bounds, f = [], [], None
        count = 0
        key_args = (key._p_bytes, key._q_bytes) if owner else (pk.to_wire()["n"],)
        n = pk.n
        workers = max(1, backend.n_workers)
        try:
            for ints, codes in chunks:
                codes = np.ascontiguousarray(codes)
                ms = b"".join((int(m) % n).to_bytes(pw, "big") for m in ints)
                if codes.ndim != 2 or codes.shape[0] != len(ms) // pw or (f is not None and codes.shape[1] != f):
                    raise ConfigError("each chunk needs codes of shape (len(ints), f) with the same f")
                f = codes.shape[1]
                # one partition per worker and chunk, so every worker is busy on every chunk
                tasks = []
                for lo, hi in _split(codes.shape[0], workers):
                    bounds.append((count + lo, count + hi))
                    tasks.append((owner, key_args, ms[lo * pw:hi * pw], pw, pk.width, codes[lo:hi]))
                count += codes.shape[0]
                self._handles += backend.map_to_partitions(w_encrypt_partition, tasks)
        except BaseException:
            self.free()
            raise
        self.count, self.bounds = count, bounds
        self._codes = _CodesInfo(f or 0)
        return self

    def _source(self, i: int) -> tuple[bytes, np.ndarray]:
        """Partition ``i`` as scattered: its ciphertext bytes (from the received parts) and its codes."""
        if self._parts is None:
            raise ComputeError("a partition computed on the workers was lost and cannot be sent again")
        lo, hi = self.bounds[i]
        w = self._width
        pieces = []
        j = bisect.bisect_right(self._part_starts, lo) - 1
        at = lo
        while at < hi:
            ps = self._part_starts[j]
            end = min(hi, ps + len(self._parts[j]) // w)
            pieces.append(memoryview(self._parts[j])[(at - ps) * w:(end - ps) * w])
            at, j = end, j + 1
        return b"".join(pieces), np.ascontiguousarray(self._codes[lo:hi])

    def __len__(self) -> int:
        return self.count

    @property
    def n_partitions(self) -> int:
        """Partitions on the backend's workers."""
        return len(self.bounds)

    def __repr__(self) -> str:
        return (f"PartitionedCipherVector(len={self.count}, partitions={len(self.bounds)}, "
                f"backend={self.backend.name}, key={self.public_key.fingerprint[:4].hex()})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
        return False

    def free(self) -> None:
        """Release the partitions on the workers (safe to call twice)."""
        if self._handles:
            self.backend.free(self._handles)
            self._handles = []

    # ------------------------------------------------------------------ tasks
    def _run(self, fn, *args, part_args, only=None):
        """``map_partitions`` over the partitions ``only`` (default all), scattering lost ones again."""
        if not self._handles:
            raise ComputeError("the partitioned vector was freed")
        idx = list(range(len(self._handles))) if only is None else list(only)
        for attempt in range(_MAX_RELOADS + 1):
            try:
                return self.backend.map_partitions(fn, [self._handles[i] for i in idx], *args,
                                                   part_args=None if part_args is None else [part_args[i] for i in idx])
            except PartitionLost as exc:
                if attempt == _MAX_RELOADS:
                    raise ComputeError(f"partitions were lost {attempt + 1} times in a row (workers keep leaving "
                                       "the cluster); giving up") from None
                lost = [idx[i] for i in exc.indices]
                self.backend.replace(self._handles, lost, [self._source(i) for i in lost])
        raise AssertionError("unreachable")  # pragma: no cover

    def histograms(self, node_rows, n_bins: int) -> list:
        """Flat histograms of several nodes: one ``CipherVector`` of length ``f * n_bins`` per row set.

        Equal (as integers mod ``n^2``, or ``n`` under OU) to
        ``build_histogram(vector, codes, rows, n_bins)`` of the in-process vector
        for each ``rows`` in ``node_rows`` (the interface of
        :class:`~fedcredit.crypto.binned.BinnedCipherVector`).

        Parameters
        ----------
        node_rows : sequence of ndarray of int
            Positions (in ``[0, len(self))``) of each node's rows.
        n_bins : int
            Codes per feature (including the missing bin).
        """
        n_bins = int(n_bins)
        f = self._codes.shape[1]
        if isinstance(self._codes, np.ndarray) and self._codes.size and (
                self._codes.min() < 0 or self._codes.max() >= n_bins):
            raise ConfigError(f"bin codes must be in [0, {n_bins})")
        k = len(node_rows)
        if k == 0:
            return []
        # per partition, each node's rows local to that partition
        per_part = [[None] * k for _ in self.bounds]
        edges = np.asarray([lo for lo, _ in self.bounds] + [self.count], dtype=np.int64)
        for s, rows in enumerate(node_rows):
            r = np.sort(np.asarray(rows, dtype=np.int64))
            if r.size and (r[0] < 0 or r[-1] >= self.count):
                raise ConfigError(f"row positions must be in [0, {self.count})")
            cut = np.searchsorted(r, edges)
            for i in range(len(self.bounds)):
                per_part[i][s] = (r[cut[i]:cut[i + 1]] - edges[i]).astype(np.int32)
        busy = [i for i in range(len(self.bounds)) if any(len(x) for x in per_part[i])]
        pk = self.public_key
        w = pk.width
        scheme = _scheme(pk)
        modulus = pk._mnsq if scheme == "paillier" else pk._mn
        total = k * f * n_bins
        if busy:
            res = self._run(w_histograms, pk.to_wire()["n"], n_bins, scheme, part_args=[(p,) for p in per_part],
                            only=busy)
            from gmpy2 import mpz

            acc = None
            for r in res:
                if len(r) != total * w:
                    raise ComputeError("a compute worker returned a histogram of the wrong size")
                vals = np.empty(total, dtype=object)
                vals[:] = [mpz.from_bytes(r[i * w:(i + 1) * w], "big") for i in range(total)]
                acc = vals if acc is None else acc * vals % modulus
        else:
            acc = np.empty(total, dtype=object)
            acc[:] = [1] * total
        out = []
        size = f * n_bins
        for s in range(k):
            blob = CipherBlob(scheme=scheme, key_fingerprint=pk.fingerprint, width=w, count=size,
                              data=b"".join(int(c).to_bytes(w, "big") for c in acc[s * size:(s + 1) * size]),
                              meta={"frac_bits": self.frac_bits})
            out.append(pk.vector_from_blob(blob))  # not "fresh": to_blob re-randomizes before it leaves
        return out


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, count))
    edges = np.linspace(0, count, parts + 1).astype(np.int64)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(parts) if edges[i + 1] > edges[i]]


class _CodesInfo:
    """Shape stand-in when the codes live only on the workers."""

    def __init__(self, f: int):
        self.shape = (0, f)


def _scheme(pk) -> str:
    """``"ou"`` or ``"paillier"`` for a public key (ConfigError for anything else)."""
    scheme = getattr(pk, "scheme", None)
    if scheme not in ("paillier", "ou") or not hasattr(pk, "_check_header"):
        raise ConfigError(f"a partitioned vector needs a Paillier or OU public key, got {type(pk).__name__}")
    return scheme


def _check_header(pk, blob) -> None:
    """The checks of ``PublicKey.vector_from_blob`` that need no ciphertext (those run on the workers)."""
    _scheme(pk)
    pk._check_header(blob)


# ---------------------------------------------------------------- worker side
def _moduli(n_bytes: bytes, scheme: str):
    """``(n, ciphertext modulus, width in bytes)``: ``n^2`` for Paillier, ``n`` for OU."""
    from gmpy2 import mpz

    n = mpz.from_bytes(n_bytes, "big")
    if scheme not in ("paillier", "ou"):
        raise ConfigError(f"unknown scheme {scheme!r}")
    m = n * n if scheme == "paillier" else n
    return n, m, (m.bit_length() + 7) // 8


def w_check(part, n_bytes: bytes, scheme: str = "paillier") -> int:
    """Check every ciphertext of a partition (in ``(0, modulus)`` and a unit mod ``n``); returns the row count."""
    from .blob import units_from_bytes

    data, codes = part
    n, m, w = _moduli(n_bytes, scheme)
    if len(data) != w * len(codes):
        raise DecryptionError()
    units_from_bytes(data, w, m, n)
    return len(codes)


def w_encrypt_partition(owner: bool, key_args: tuple, ms: bytes, pw: int, width: int, codes: np.ndarray):
    """Encrypt one chunk's plaintexts (fixed-width bytes) and keep ``(ciphertext bytes, codes)`` as a partition."""
    from gmpy2 import mpz

    from . import pool as _pool

    ints = [mpz.from_bytes(ms[i:i + pw], "big") for i in range(0, len(ms), pw)]
    if owner:
        data = _pool.w_owner_encrypt(*key_args, ints, width)
    else:
        data = _pool.w_public_encrypt(*key_args, ints, width)
    return data, codes


def w_histograms(part, n_bytes: bytes, n_bins: int, scheme: str, row_sets) -> bytes:
    """Partial flat histograms (feature-major) of several row sets of one partition, as fixed-width bytes."""
    from gmpy2 import mpz

    from ._buckets import feature_bucket_sums
    from ._raw import ints_to_bytes

    data, codes = part
    _, m, w = _moduli(n_bytes, scheme)
    mv = memoryview(data)
    fb = mpz.from_bytes
    f = codes.shape[1]
    out = []
    for rows in row_sets:
        if len(rows) == 0:
            out.extend([mpz(1)] * (f * n_bins))
            continue
        cs = [fb(mv[int(i) * w:(int(i) + 1) * w], "big") for i in rows]
        out.extend(feature_bucket_sums(cs, codes[rows], n_bins, m))
    return ints_to_bytes(out, w)
