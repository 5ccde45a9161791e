"""The PSI protocol's messages: stage (= message), tag, sender, receiver and payload type.

Every message goes through :data:`SPEC` (:mod:`fedcredit.protocols._spec`),
which derives the tag, checks the roles, the payload and the order of the
messages on each link. One guest (the label holder) runs the protocol
pairwise with each host; in cardinality mode with several hosts the first
host (in sorted order) also sends the other hosts a shared shuffle seed.

=====================  ============  =========  ==========  ===================================
message (tag)          stage         sender     receiver    payload
=====================  ============  =========  ==========  ===================================
``guest-hello``        GUEST_HELLO   guest      host        dict: version, group, mode, n, chunk, salt
``host-hello``         HOST_HELLO    host       guest       dict: n, accept, reason
``shuffle-seed``       SHUFFLE_SEED  host       host        dict: seed (32 bytes; cardinality, N > 1)
``g2h/chunk-<i>``      G2H           guest      host        bytes: ``H(a)^alpha``, guest row order
``h2g/chunk-<i>``      H2G           host       guest       bytes: ``H(b)^beta``, host-shuffled order
``back/chunk-<i>``     BACK          host       guest       bytes: ``H(a)^(alpha beta)``, guest order
                                                            (own mode) or shuffled (cardinality)
``size``               SIZE          guest      host        dict: size, accept, reason
``verdict``            VERDICT       host       guest       dict: accept, reason
``members``            MEMBERS       guest      host        dict: status, reason, positions
=====================  ============  =========  ==========  ===================================

Order on a guest-host link: the hellos, then the three point streams
(interleaved as each side's loop runs them), then size, verdict, members.
"""

from __future__ import annotations

import enum

import numpy as np

from ...crypto.psi import POINT_BYTES
from ...errors import ProtocolError
from .._spec import Message, Session, Spec

__all__ = ["Stage", "SPEC", "VERSION", "MODES", "session", "check_points"]

VERSION = 1
MODES = ("intersection", "cardinality")


class Stage(str, enum.Enum):
    """Messages of one PSI run, in order; the value is the message name in the tag."""

    GUEST_HELLO = "guest-hello"
    HOST_HELLO = "host-hello"
    SHUFFLE_SEED = "shuffle-seed"
    G2H = "g2h"
    H2G = "h2g"
    BACK = "back"
    SIZE = "size"
    VERDICT = "verdict"
    MEMBERS = "members"


_POINTS = ("bytes", POINT_BYTES, "point")
_EXCHANGE = (Stage.G2H, Stage.H2G, Stage.BACK)

SPEC = Spec("PSI", [
    Message(Stage.GUEST_HELLO, "guest", "host", "job",
            {"version": int, "group": str, "mode": str, "n": int, "chunk": int, "salt": bytes}),
    Message(Stage.HOST_HELLO, "host", "guest", "job", {"n": int, "accept": bool, "reason": str}),
    Message(Stage.SHUFFLE_SEED, "host", "host", "job", {"seed": bytes}),
    Message(Stage.G2H, "guest", "host", "chunk", _POINTS),
    Message(Stage.H2G, "host", "guest", "chunk", _POINTS),
    Message(Stage.BACK, "host", "guest", "chunk", _POINTS),
    Message(Stage.SIZE, "guest", "host", "job", {"size": int, "accept": bool, "reason": str}),
    Message(Stage.VERDICT, "host", "guest", "job", {"accept": bool, "reason": str}),
    Message(Stage.MEMBERS, "guest", "host", "job", {"status": str, "reason": str, "positions": np.ndarray}),
], scopes={"chunk": "{stage}/chunk-{i}"}, flow={
    None: (Stage.GUEST_HELLO, Stage.SHUFFLE_SEED),
    Stage.GUEST_HELLO: (Stage.HOST_HELLO,),
    Stage.HOST_HELLO: (*_EXCHANGE, Stage.SIZE),
    **{s: (*_EXCHANGE, Stage.SIZE) for s in _EXCHANGE},
    Stage.SIZE: (Stage.VERDICT,),
    Stage.VERDICT: (Stage.MEMBERS,),
})


def session(party: str, guest: str, hosts) -> Session:
    """This party's checked end of PSI (guest ``guest``, hosts ``hosts``)."""
    return SPEC.session({guest: "guest", **{h: "host" for h in hosts}}, party)


def check_points(stage: Stage, msg: bytes, *, peer: str, count: int) -> bytes:
    """A checked point chunk must also hold exactly ``count`` points (ProtocolError otherwise)."""
    if len(msg) != count * POINT_BYTES:
        raise ProtocolError(f"PSI: {stage.value!r} from {peer!r} holds {len(msg) // POINT_BYTES} points, "
                            f"expected {count}")
    return msg
