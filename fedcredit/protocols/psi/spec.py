"""The PSI protocol's messages: stage, tag, sender, receiver and payload type.

Every handler checks a peer message with :func:`expect` before acting on it.
One guest (the label holder) runs the protocol pairwise with each host; in
cardinality mode with several hosts the first host (in sorted order) also
sends the other hosts a shared shuffle seed.

=====================  ===========  =========  ==========  ===================================
message (tag)          stage        sender     receiver    payload
=====================  ===========  =========  ==========  ===================================
``guest-hello``        HELLO        guest      host        dict: version, group, mode, n, chunk, salt
``host-hello``         HELLO        host       guest       dict: n, accept, reason
``shuffle-seed``       HELLO        host       host        dict: seed (32 bytes; cardinality, N > 1)
``g2h/chunk-<i>``      EXCHANGE     guest      host        bytes: ``H(a)^alpha``, guest row order
``h2g/chunk-<i>``      EXCHANGE     host       guest       bytes: ``H(b)^beta``, host-shuffled order
``back/chunk-<i>``     EXCHANGE     host       guest       bytes: ``H(a)^(alpha beta)``, guest order
                                                           (own mode) or shuffled (cardinality)
``size``               VERDICT      guest      host        dict: size, accept, reason
``verdict``            VERDICT      host       guest       dict: accept, reason
``members``            MEMBERS      guest      host        dict: status, reason, positions
=====================  ===========  =========  ==========  ===================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ProtocolError
from ...crypto.psi import POINT_BYTES

__all__ = ["Stage", "Message", "MESSAGES", "VERSION", "MODES", "expect", "tag", "expect_points"]

VERSION = 1
MODES = ("intersection", "cardinality")


class Stage(enum.Enum):
    """Stages of one PSI run, in order."""

    HELLO = "hello"
    EXCHANGE = "exchange"
    VERDICT = "verdict"
    MEMBERS = "members"


@dataclass(frozen=True)
class Message:
    """One message kind: its tag (``{i}`` is the chunk index), stage, roles and payload type.

    ``fields`` maps each dict key to its exact type; ``None`` means the
    payload is ``bytes`` of whole 32-byte points.
    """

    tag: str
    stage: Stage
    sender: str
    receiver: str
    fields: dict[str, type] | None


MESSAGES: dict[str, Message] = {
    m.tag: m
    for m in [
        Message("guest-hello", Stage.HELLO, "guest", "host",
                {"version": int, "group": str, "mode": str, "n": int, "chunk": int, "salt": bytes}),
        Message("host-hello", Stage.HELLO, "host", "guest", {"n": int, "accept": bool, "reason": str}),
        Message("shuffle-seed", Stage.HELLO, "host", "host", {"seed": bytes}),
        Message("g2h/chunk-{i}", Stage.EXCHANGE, "guest", "host", None),
        Message("h2g/chunk-{i}", Stage.EXCHANGE, "host", "guest", None),
        Message("back/chunk-{i}", Stage.EXCHANGE, "host", "guest", None),
        Message("size", Stage.VERDICT, "guest", "host", {"size": int, "accept": bool, "reason": str}),
        Message("verdict", Stage.VERDICT, "host", "guest", {"accept": bool, "reason": str}),
        Message("members", Stage.MEMBERS, "guest", "host", {"status": str, "reason": str, "positions": np.ndarray}),
    ]
}


def tag(name: str, i: int | None = None) -> str:
    """The wire tag of message ``name`` (chunk ``i`` for chunked messages)."""
    m = MESSAGES[name]
    return m.tag.format(i=i) if "{i}" in m.tag else m.tag


def expect(stage: Stage, name: str, msg: Any, *, peer: str) -> Any:
    """Check that ``msg`` is a well-formed ``name`` message at ``stage``; return it.

    Keys must be exactly the declared ones and each value of the exact type
    (a ``bool`` is not an ``int``). Point messages must be ``bytes`` holding
    whole 32-byte points.

    Raises
    ------
    ProtocolError
        Wrong stage, missing or extra keys, or a value of the wrong type.
    """
    spec = MESSAGES.get(name)
    if spec is None:
        raise ProtocolError(f"PSI: unknown message {name!r} from {peer!r}")
    if spec.stage is not stage:
        raise ProtocolError(f"PSI: message {name!r} from {peer!r} belongs to stage {spec.stage.value}, not {stage.value}")
    if spec.fields is None:
        if type(msg) is not bytes:
            raise ProtocolError(f"PSI: {name!r} from {peer!r} must be bytes, got {type(msg).__name__}")
        if len(msg) % POINT_BYTES:
            raise ProtocolError(f"PSI: {name!r} from {peer!r} is {len(msg)} bytes, not whole {POINT_BYTES}-byte points")
        return msg
    if type(msg) is not dict:
        raise ProtocolError(f"PSI: {name!r} from {peer!r} must be a dict, got {type(msg).__name__}")
    if set(msg) != set(spec.fields):
        missing = sorted(set(spec.fields) - set(msg))
        extra = sorted(set(msg) - set(spec.fields))
        raise ProtocolError(f"PSI: {name!r} from {peer!r} has missing keys {missing} / unexpected keys {extra}")
    for key, typ in spec.fields.items():
        if type(msg[key]) is not typ:
            raise ProtocolError(
                f"PSI: {name!r} from {peer!r}: {key!r} must be {typ.__name__}, got {type(msg[key]).__name__}"
            )
    return msg


def expect_points(stage: Stage, name: str, msg: Any, *, peer: str, count: int) -> bytes:
    """:func:`expect` for a point chunk that must hold exactly ``count`` points."""
    expect(stage, name, msg, peer=peer)
    if len(msg) != count * POINT_BYTES:
        raise ProtocolError(f"PSI: {name!r} from {peer!r} holds {len(msg) // POINT_BYTES} points, expected {count}")
    return msg
