"""Messages of horizontal (FedAvg) training, one entry per message.

Every round ``r`` starts with :attr:`Stage.START` and then runs one
aggregation sub-protocol, chosen by ``mode``:

``plain``  (not private)::

    START → UPDATE

``secagg`` (Bonawitz et al. 2017, pipelined; once per job: DIRECT → ADVERTISE → ROSTER → SHARES of round 0; then
per round)::

    START(+FORWARD of round r's shares) → MASKED(+SHARES of round r+1) → UNMASK → REVEAL

  A client left out of round r (its shares for r did not arrive) answers
  START with a standalone SHARES for round r+1 and is back one round later.

``ckks`` (once per job: KEY_DIRECT → KEY_ADVERTISE → KEY_ROSTER → CONTEXT → KEY; then per round)::

    START → ENCRYPTED → DECRYPT → DECRYPTED

DIRECT and KEY_DIRECT are the only client-to-client messages: each client
sends its public key straight to every other client over their mTLS link, and
checks the keys the aggregator forwards in the roster against them (so the
aggregator cannot substitute keys; see :mod:`.client`).

Tags are ``round-<r>/<message>`` (``setup/<message>`` for the key set-ups).
FORWARD travels inside START (``aggregation`` field; ``{}`` in the other modes)
and has no tag of its own.
Every message the aggregator sends to a client that may have been dropped
carries ``dropped: bool`` (FORWARD: ``included: bool``); a client told it is
out skips to the next round's START (that is how a client that comes back
joins again).

Handlers call :func:`expect` on every peer message before acting on it: it
checks that the message is the one expected at this stage, that the payload
is a dict with exactly the required keys, and the exact type of each value
(``bool`` is not accepted for ``int``), and raises ``ProtocolError`` otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ...errors import ProtocolError

__all__ = ["Stage", "Message", "MESSAGES", "MODES", "expect", "tag", "NEXT"]

MODES = ("plain", "secagg", "ckks")


class Stage(str, enum.Enum):
    """Protocol stages, in order; the value is the message name in the tag."""

    START = "start"
    UPDATE = "update"
    DIRECT = "direct"
    ADVERTISE = "advertise"
    ROSTER = "roster"
    SHARES = "shares"
    FORWARD = "forward"
    MASKED = "masked"
    UNMASK = "unmask"
    REVEAL = "reveal"
    KEY_DIRECT = "key-direct"
    KEY_ADVERTISE = "key-advertise"
    KEY_ROSTER = "key-roster"
    CONTEXT = "context"
    KEY = "key"
    ENCRYPTED = "encrypted"
    DECRYPT = "decrypt"
    DECRYPTED = "decrypted"


@dataclass(frozen=True)
class Message:
    """One message: who sends it, who receives it, and its payload fields with exact types."""

    stage: Stage
    sender: str
    receiver: str
    fields: dict
    setup: bool = False
    inside: Stage | None = None  # travels as a field of this message (no tag of its own)


_F64 = ("ndarray", np.float64)
_U64 = ("ndarray", np.uint64)

MESSAGES: dict[Stage, Message] = {
    m.stage: m
    for m in [
        Message(Stage.START, "aggregator", "client",
                {"round": int, "stop": bool, "params": _F64, "aggregation": dict}),
        Message(Stage.UPDATE, "client", "aggregator", {"vector": _F64}),
        Message(Stage.DIRECT, "client", "client", {"public_key": bytes}, setup=True),
        Message(Stage.ADVERTISE, "client", "aggregator", {"public_key": bytes}, setup=True),
        Message(Stage.ROSTER, "aggregator", "client",
                {"dropped": bool, "clients": list, "public_keys": list, "threshold": int}, setup=True),
        Message(Stage.SHARES, "client", "aggregator", {"sealed": dict}),
        Message(Stage.FORWARD, "aggregator", "client",
                {"included": bool, "clients": list, "sealed": dict, "next": list}, inside=Stage.START),
        Message(Stage.MASKED, "client", "aggregator", {"masked": _U64, "next_sealed": dict}),
        Message(Stage.UNMASK, "aggregator", "client", {"dropped": bool, "survivors": list, "lost": list}),
        Message(Stage.REVEAL, "client", "aggregator", {"self_shares": dict, "pair_shares": dict}),
        Message(Stage.KEY_DIRECT, "client", "client", {"public_key": bytes}, setup=True),
        Message(Stage.KEY_ADVERTISE, "client", "aggregator", {"public_key": bytes}, setup=True),
        Message(Stage.KEY_ROSTER, "aggregator", "client", {"clients": list, "public_keys": list, "dealer": str},
                setup=True),
        Message(Stage.CONTEXT, "client", "aggregator", {"public_context": bytes, "sealed": dict}, setup=True),
        Message(Stage.KEY, "aggregator", "client", {"sealed": bytes, "dealer": str}, setup=True),
        Message(Stage.ENCRYPTED, "client", "aggregator", {"ciphertext": list}),
        Message(Stage.DECRYPT, "aggregator", "client", {"dropped": bool, "ciphertext": list}),
        Message(Stage.DECRYPTED, "client", "aggregator", {"vector": _F64}),
    ]
}

#: Messages of each mode in the order a steady-state round sends them (set-up messages first).
NEXT: dict[str, tuple[Stage, ...]] = {
    "plain": (Stage.START, Stage.UPDATE),
    "secagg": (Stage.DIRECT, Stage.ADVERTISE, Stage.ROSTER, Stage.SHARES, Stage.START, Stage.FORWARD, Stage.MASKED,
               Stage.UNMASK, Stage.REVEAL),
    "ckks": (Stage.KEY_DIRECT, Stage.KEY_ADVERTISE, Stage.KEY_ROSTER, Stage.CONTEXT, Stage.KEY, Stage.START, Stage.ENCRYPTED,
             Stage.DECRYPT, Stage.DECRYPTED),
}


def tag(stage: Stage, round_index: int | None) -> str:
    """Wire tag of a stage's message in a round (``None`` for set-up messages)."""
    msg = MESSAGES[stage]
    if msg.inside is not None:
        raise ProtocolError(f"stage {stage.value!r} travels inside {msg.inside.value!r} and has no tag")
    if msg.setup:
        return f"setup/{stage.value}"
    if round_index is None or round_index < 0:
        raise ProtocolError(f"stage {stage.value!r} needs a round index")
    return f"round-{round_index}/{stage.value}"


def _type_ok(value, expected) -> bool:
    if isinstance(expected, tuple):
        return isinstance(value, np.ndarray) and value.dtype == expected[1] and value.ndim == 1
    if expected is int:
        return type(value) is int
    if expected is bool:
        return type(value) is bool
    return type(value) is expected


def expect(stage: Stage, msg, *, sender_role: str | None = None) -> dict:
    """Check a received payload against the spec of ``stage``; return it.

    Parameters
    ----------
    stage : Stage
        The message the handler is waiting for.
    msg : object
        The decoded payload.
    sender_role : str, optional
        Role of the party it came from; must be the spec's sender.

    Raises
    ------
    ProtocolError
        Wrong sender role, not a dict, missing or unexpected keys, or a value
        of the wrong exact type.
    """
    spec = MESSAGES[stage]
    if sender_role is not None and sender_role != spec.sender:
        raise ProtocolError(f"homo {stage.value}: sent by a {sender_role}, expected the {spec.sender}")
    if not isinstance(msg, dict):
        raise ProtocolError(f"homo {stage.value}: payload is {type(msg).__name__}, expected dict")
    keys = set(msg)
    required = set(spec.fields)
    if "dropped" in spec.fields and msg.get("dropped") is True:
        required = {"dropped"}  # a drop notice carries nothing else
    missing = required - keys
    extra = keys - set(spec.fields)
    if missing or extra:
        raise ProtocolError(
            f"homo {stage.value}: missing keys {sorted(missing)}, unexpected keys {sorted(extra)}"
        )
    for k in keys:
        exp = spec.fields[k]
        if not _type_ok(msg[k], exp):
            name = f"1-d {exp[1].__name__} array" if isinstance(exp, tuple) else exp.__name__
            raise ProtocolError(f"homo {stage.value}: {k!r} must be {name}, got {type(msg[k]).__name__}")
    return msg
