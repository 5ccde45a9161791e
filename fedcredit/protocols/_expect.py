"""Shared message-spec machinery for the scorecard-workflow protocols.

Each protocol's ``spec.py`` lists its messages as :class:`Message` entries
(stage, sender role, receiver role, payload fields with exact types) and
calls :func:`check` from its ``expect``. Field types: a Python type (checked
exactly: ``bool`` is not an ``int``), ``("ndarray", dtype)`` for a 1-d numpy
array of that dtype, ``("ndarray2", dtype)`` for 2-d, ``"blob"`` for a
:class:`~fedcredit.crypto.blob.CipherBlob`, or a tuple of alternatives
``("any", t1, t2)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..crypto.blob import CipherBlob
from ..errors import ProtocolError

__all__ = ["Message", "check"]


@dataclass(frozen=True)
class Message:
    """One message: its stage, sender and receiver roles, and its payload fields with exact types."""

    stage: enum.Enum
    sender: str
    receiver: str
    fields: dict


def _ok(value, exp) -> bool:
    if exp == "blob":
        return isinstance(value, CipherBlob)
    if isinstance(exp, tuple) and exp and exp[0] == "any":
        return any(_ok(value, e) for e in exp[1:])
    if isinstance(exp, tuple):
        ndim = 2 if exp[0] == "ndarray2" else 1
        return isinstance(value, np.ndarray) and value.dtype == np.dtype(exp[1]) and value.ndim == ndim
    if exp is None:
        return value is None
    return type(value) is exp


def _name(exp) -> str:
    if exp == "blob":
        return "CipherBlob"
    if isinstance(exp, tuple) and exp and exp[0] == "any":
        return " or ".join(_name(e) for e in exp[1:])
    if isinstance(exp, tuple):
        return f"{2 if exp[0] == 'ndarray2' else 1}-d {np.dtype(exp[1]).name} array"
    return "None" if exp is None else exp.__name__


def check(protocol: str, spec: Message, msg, *, sender_role: str | None = None) -> dict:
    """Validate a received payload against ``spec``; return it.

    Raises
    ------
    ProtocolError
        Wrong sender role, not a dict, missing or unexpected keys, or a value
        of the wrong exact type.
    """
    stage = spec.stage.value
    if sender_role is not None and sender_role != spec.sender:
        raise ProtocolError(f"{protocol} {stage}: sent by a {sender_role}, expected the {spec.sender}")
    if not isinstance(msg, dict):
        raise ProtocolError(f"{protocol} {stage}: payload is {type(msg).__name__}, expected dict")
    missing = set(spec.fields) - set(msg)
    extra = set(msg) - set(spec.fields)
    if missing or extra:
        raise ProtocolError(f"{protocol} {stage}: missing keys {sorted(missing)}, unexpected keys {sorted(extra)}")
    for k, exp in spec.fields.items():
        if not _ok(msg[k], exp):
            raise ProtocolError(f"{protocol} {stage}: {k!r} must be {_name(exp)}, got {type(msg[k]).__name__}")
    return msg
