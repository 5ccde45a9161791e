"""A tree's per-row ciphertexts with this party's bin codes, and their per-node histograms.

One interface for both places the rows can live, so a protocol never branches on the
compute backend (DESIGN §7): :func:`binned_from_blobs` returns

* a :class:`BinnedCipherVector` -- the rows in this process (the local backend; Paillier or OU), or
* a :class:`~fedcredit.crypto.partitioned.PartitionedCipherVector` -- the rows partitioned on the
  workers of a distributed backend (Paillier), only partial sums coming back;

both with ``histograms(node_rows, n_bins)``, ``n_partitions``, ``len`` and ``free()``. The sums are
the same integers either way (a histogram bin is the product mod ``n^2`` of the same ciphertexts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .._executor import Executor, current
from ..errors import ConfigError, ProtocolError
from .partitioned import PartitionedCipherVector

__all__ = ["BinnedCipherVector", "binned_from_blobs"]


class BinnedCipherVector:
    """Per-row ciphertexts (one additive vector) with the bin codes of the same rows, in this process.

    Parameters
    ----------
    vector : CipherVector
        One ciphertext per row (``paillier`` or ``ou``).
    codes : ndarray of shape (len(vector), f), integer
        This party's bin codes of the same rows.
    """

    #: Partitions on a distributed backend's workers (none: the rows are in this process).
    n_partitions = 0

    def __init__(self, vector, codes: np.ndarray):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != len(vector):
            raise ConfigError(f"codes must have shape ({len(vector)}, f), got {codes.shape}")
        self.vector = vector
        self.codes = codes

    def __len__(self) -> int:
        return len(self.vector)

    def histograms(self, node_rows: Sequence, n_bins: int) -> list:
        """Flat histograms (feature-major, length ``f * n_bins``) of several nodes, one vector per node.

        Parameters
        ----------
        node_rows : sequence of ndarray of int
            Positions (in ``[0, len(self))``) of each node's rows.
        n_bins : int
            Codes per feature (including the missing bin).
        """
        out = []
        for rows in node_rows:
            rows = np.asarray(rows, dtype=np.int64)
            # the node's codes as they are (uint8): an int64 copy would be 8x the codes
            out.append(self.vector[rows].histogram(self.codes[rows], n_bins))
        return out

    def free(self) -> None:
        """Nothing to release (the interface of :class:`PartitionedCipherVector`)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
        return False


def binned_from_blobs(public_key, blobs: Iterable, codes: np.ndarray, *, backend: Executor | None = None):
    """Take in a ciphertext vector arriving in consecutive parts, with the bin codes of its rows.

    Parameters
    ----------
    public_key : paillier.PublicKey or ou.PublicKey
        The key every part must be under.
    blobs : iterable of CipherBlob
        The parts in row order (e.g. a generator that receives and checks each part).
    codes : ndarray of shape (n, f), integer
        Bin codes of all ``n`` rows.
    backend : Executor, optional
        Default: the party's current compute backend. A distributed one keeps the rows on its
        workers (each partition scattered as soon as its rows have arrived).

    Returns
    -------
    BinnedCipherVector or PartitionedCipherVector

    Raises
    ------
    DecryptionError
        Opaquely, if a part is not a vector under ``public_key`` or holds an invalid ciphertext.
    ProtocolError, ConfigError
        If the parts hold more or fewer ciphertexts than ``codes`` has rows (in this process; on a
        distributed backend, as :meth:`PartitionedCipherVector.from_blobs`).
    """
    backend = backend if backend is not None else current()
    if backend.distributed:
        return PartitionedCipherVector.from_blobs(public_key, blobs, codes, backend=backend)
    vectors = [public_key.vector_from_blob(blob) for blob in blobs]
    vector = vectors[0].concat(*vectors[1:]) if vectors else public_key.encrypt_zeros(0)
    if len(vector) != len(codes):  # the parts came from a peer
        raise ProtocolError(f"the parts hold {len(vector)} ciphertexts, the rows are {len(codes)}")
    return BinnedCipherVector(vector, codes)
