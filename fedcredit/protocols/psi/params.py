"""Parameters of the ``psi`` step (checked when the job is submitted, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from ..._validation import Interval, Params, StrOptions
from ._common import DEFAULT_CHUNK

__all__ = ["PSIParams"]


@dataclass(frozen=True)
class PSIParams(Params):
    """``psi`` step parameters (see :mod:`fedcredit.protocols.psi`).

    Attributes
    ----------
    mode : {"intersection", "cardinality"}, default="intersection"
    reveal : {"own"}, default="own"
    group : {"curve25519", "ristretto255"}, default="curve25519"
    chunk_size : int in [1024, 1048576], default=32768
    """

    _parameter_constraints = {
        "mode": [StrOptions({"intersection", "cardinality"})],
        "reveal": [StrOptions({"own"})],
        "group": [StrOptions({"curve25519", "ristretto255"})],
        "chunk_size": [Interval(int, 1024, 1 << 20)],
    }

    mode: str = "intersection"
    reveal: str = "own"
    group: str = "curve25519"
    chunk_size: int = DEFAULT_CHUNK
