"""A trivial step that exchanges real messages: every party tells the guest its row count.

Used to check a federation end to end before any crypto runs. Messages
(:data:`SPEC`): ROWS (each non-guest party → guest, its row count) and ACK
(guest → each of them, the sorted names of the parties that answered).
Every party's role other than the guest is a *peer* role here: a handshake
runs before any protocol, whatever the job's roles.
"""

from __future__ import annotations

import enum

from ._spec import Message, Spec
from .context import StepContext

__all__ = ["run", "Stage", "SPEC"]


class Stage(str, enum.Enum):
    ROWS = "rows"
    ACK = "ack"


SPEC = Spec("handshake", [
    Message(Stage.ROWS, "peer", "guest", "job", int),
    Message(Stage.ACK, "guest", "peer", "job", list),
])


def run(ctx: StepContext) -> dict:
    rows = 0 if ctx.data is None else int(len(ctx.data))
    others = [p for p in ctx.roles if p != ctx.party]
    # the guest and, for this step, everybody else as a "peer" (hosts, arbiters, clients, aggregators)
    s = SPEC.session({p: "guest" if r == "guest" else "peer" for p, r in ctx.roles.items()}, ctx.party)
    if ctx.role == "guest":
        counts = {ctx.party: rows}
        for p in others:
            counts[p] = s.recv(ctx.channel, p, Stage.ROWS)
        s.broadcast(ctx.channel, others, Stage.ACK, sorted(counts))
        return {"rows": counts}
    s.send(ctx.channel, ctx.guest, Stage.ROWS, rows)
    ack = s.recv(ctx.channel, ctx.guest, Stage.ACK)
    return {"rows": {ctx.party: rows}, "parties": ack}
