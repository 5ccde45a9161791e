"""Shared pieces of the PSI roles: the result type, chunking and the policy check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...errors import PolicyError

__all__ = ["PSIResult", "DEFAULT_CHUNK", "n_chunks", "check_min", "no_progress"]

DEFAULT_CHUNK = 32768  # points per message: 1 MiB of payload


@dataclass(frozen=True)
class PSIResult:
    """One party's outcome of a PSI run.

    Attributes
    ----------
    size : int
        Size of the intersection of all parties' sets.
    index : ndarray of int64, shape (size,), or None
        This party's row indices of the intersection members, in the agreed
        order (ascending normalized id, the same sequence on every party).
        ``None`` in cardinality mode.
    mode : {"intersection", "cardinality"}
    sizes : dict of str to int
        On the guest: the pairwise intersection size with each host (the
        guest learns these in both modes). Empty on a host.
    """

    size: int
    index: np.ndarray | None
    mode: str = "intersection"
    sizes: dict[str, int] = field(default_factory=dict)


def n_chunks(n: int, chunk: int) -> int:
    return -(-n // chunk)


def check_min(what: str, size: int, minimum: int | None, party: str) -> str:
    """The refusal reason if ``size < minimum`` ('' when acceptable)."""
    if minimum is not None and size < minimum:
        return f"{party}'s policy requires at least {minimum} common rows; {what} is {size}"
    return ""


def refuse(reason: str) -> PolicyError:
    return PolicyError(f"PSI refused: {reason}")


def no_progress(message: str, fraction: float | None = None) -> None:
    pass


ProgressFn = Callable[[str, "float | None"], None]
