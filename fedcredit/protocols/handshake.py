"""A trivial step that exchanges real messages: every party tells the guest its row count.

Used to check a federation end to end before any crypto runs.
"""

from __future__ import annotations

from .context import StepContext


def run(ctx: StepContext) -> dict:
    rows = 0 if ctx.data is None else int(len(ctx.data))
    others = [p for p in ctx.roles if p != ctx.party]
    if ctx.role == "guest":
        counts = {ctx.party: rows}
        for p in others:
            msg = ctx.channel.recv(p, "rows")
            if not isinstance(msg, int) or isinstance(msg, bool):
                from ..errors import ProtocolError

                raise ProtocolError(f"handshake: {p!r} sent {type(msg).__name__}, expected int")
            counts[p] = msg
        ctx.channel.broadcast(others, "ack", sorted(counts))
        return {"rows": counts}
    ctx.channel.send(ctx.guest, "rows", rows)
    ack = ctx.channel.recv(ctx.guest, "ack")
    return {"rows": {ctx.party: rows}, "parties": ack}
