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

Every message goes through :data:`SPEC` (:mod:`fedcredit.protocols._spec`):
a party's :class:`~fedcredit.protocols._spec.Session` derives the tag, checks
the roles, the payload (exact keys and types; ``bool`` is not accepted for
``int``; a drop notice is ``{"dropped": True}`` alone) and, per link, the
order of the messages against the mode's flow (:data:`FLOWS`, the
transitions above plus the skips a dropped or left-out client takes), and
raises ``ProtocolError`` otherwise.
"""

from __future__ import annotations

import enum

import numpy as np

from .._spec import Message, Session, Spec

__all__ = ["Stage", "SPEC", "MODES", "FLOWS", "session"]

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


_F64 = ("ndarray", np.float64)
_U64 = ("ndarray", np.uint64)
_AGG, _CL = "aggregator", "client"

SPEC = Spec("homo", [
    Message(Stage.START, _AGG, _CL, "round", {"round": int, "stop": bool, "params": _F64, "aggregation": dict}),
    Message(Stage.UPDATE, _CL, _AGG, "round", {"vector": _F64}),
    Message(Stage.DIRECT, _CL, _CL, "setup", {"public_key": bytes}),
    Message(Stage.ADVERTISE, _CL, _AGG, "setup", {"public_key": bytes}),
    Message(Stage.ROSTER, _AGG, _CL, "setup", {"dropped": bool, "clients": list, "public_keys": list, "threshold": int},
            notice="dropped"),
    Message(Stage.SHARES, _CL, _AGG, "round", {"sealed": dict}),
    # FORWARD travels as START's ``aggregation`` field (no tag of its own)
    Message(Stage.FORWARD, _AGG, _CL, None, {"included": bool, "clients": list, "sealed": dict, "next": list}),
    Message(Stage.MASKED, _CL, _AGG, "round", {"masked": _U64, "next_sealed": dict}),
    Message(Stage.UNMASK, _AGG, _CL, "round", {"dropped": bool, "survivors": list, "lost": list}, notice="dropped"),
    Message(Stage.REVEAL, _CL, _AGG, "round", {"self_shares": dict, "pair_shares": dict}),
    Message(Stage.KEY_DIRECT, _CL, _CL, "setup", {"public_key": bytes}),
    Message(Stage.KEY_ADVERTISE, _CL, _AGG, "setup", {"public_key": bytes}),
    Message(Stage.KEY_ROSTER, _AGG, _CL, "setup", {"clients": list, "public_keys": list, "dealer": str}),
    Message(Stage.CONTEXT, _CL, _AGG, "setup", {"public_context": bytes, "sealed": dict}),
    Message(Stage.KEY, _AGG, _CL, "setup", {"sealed": bytes, "dealer": str}),
    Message(Stage.ENCRYPTED, _CL, _AGG, "round", {"ciphertext": list}),
    Message(Stage.DECRYPT, _AGG, _CL, "round", {"dropped": bool, "ciphertext": list}, notice="dropped"),
    Message(Stage.DECRYPTED, _CL, _AGG, "round", {"vector": _F64}),
], scopes={"setup": "setup/{stage}", "round": "round-{r}/{stage}"}, flows={
    # per link, both directions. START -> START: a client that sent nothing in a round (dropped, or left out
    # in the last round) goes on with the next START; the aggregator waited for it in vain.
    "plain": {
        None: (Stage.START,),
        Stage.START: (Stage.UPDATE, Stage.START),
        Stage.UPDATE: (Stage.START,),
    },
    "secagg": {
        None: (Stage.DIRECT, Stage.ADVERTISE),
        Stage.DIRECT: (Stage.DIRECT,),  # client to client: this client's key out, the peer's in
        Stage.ADVERTISE: (Stage.ROSTER,),
        Stage.ROSTER: (Stage.SHARES, Stage.START),
        Stage.SHARES: (Stage.START,),
        # the client checks START's FORWARD (the aggregator sends it inside START: no step of its own there)
        Stage.START: (Stage.FORWARD, Stage.MASKED, Stage.SHARES, Stage.START),  # in / left out / nothing sent
        Stage.FORWARD: (Stage.MASKED, Stage.SHARES, Stage.START),
        Stage.MASKED: (Stage.UNMASK,),
        Stage.UNMASK: (Stage.REVEAL, Stage.START),
        Stage.REVEAL: (Stage.START,),
    },
    "ckks": {
        None: (Stage.KEY_DIRECT, Stage.KEY_ADVERTISE),
        Stage.KEY_DIRECT: (Stage.KEY_DIRECT,),
        Stage.KEY_ADVERTISE: (Stage.KEY_ROSTER,),
        Stage.KEY_ROSTER: (Stage.CONTEXT, Stage.KEY),  # the dealer / the other members
        Stage.CONTEXT: (Stage.START,),
        Stage.KEY: (Stage.START,),
        Stage.START: (Stage.ENCRYPTED, Stage.START),
        Stage.ENCRYPTED: (Stage.DECRYPT,),
        Stage.DECRYPT: (Stage.DECRYPTED, Stage.START),
        Stage.DECRYPTED: (Stage.START,),
    },
})

#: The transitions each mode allows on one link (see :meth:`~fedcredit.protocols._spec.Spec.session`).
FLOWS = SPEC.flows


def session(party: str, aggregator: str, clients, mode: str) -> Session:
    """This party's checked end of a ``mode`` run (aggregator ``aggregator``, clients ``clients``)."""
    return SPEC.session({aggregator: "aggregator", **{c: "client" for c in clients}}, party, flow=mode)
