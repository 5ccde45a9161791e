"""Step kinds for the adversarial suite, loaded into party processes through FEDCREDIT_STEP_PLUGINS.

``adv_wait``: every party waits (checking for cancellation) ``params["seconds"]``.
``adv_garbage``: the party named ``params["party"]`` sends the guest bytes that
are not a payload at all; the guest receives them.
``adv_wrongtype``: the named party sends a well-formed payload of the wrong
type (a string where the guest reads a number from a dict).
"""

from __future__ import annotations

import time

from fedcredit.protocols.context import StepContext


def _guest(ctx: StepContext) -> str:
    return next(p for p, r in ctx.roles.items() if r == "guest")


def wait(ctx: StepContext) -> dict:
    end = time.monotonic() + float(ctx.params.get("seconds", 30))
    while time.monotonic() < end:
        ctx.check_cancelled()
        time.sleep(0.1)
    return {"waited": True}


def garbage(ctx: StepContext) -> dict:
    guest, bad = _guest(ctx), ctx.params.get("party")
    if ctx.party == bad:
        ch = ctx.channel
        ch._s.backend.send_bytes(guest, ch._full(guest, "numbers"), b"\xff\xfe not a payload \x00")
    elif ctx.party == guest:
        ctx.channel.recv(bad, "numbers")
    return {}


def wrong_type(ctx: StepContext) -> dict:
    guest, bad = _guest(ctx), ctx.params.get("party")
    if ctx.party == bad:
        ctx.channel.send(guest, "numbers", "not a dict")
    elif ctx.party == guest:
        msg = ctx.channel.recv(bad, "numbers")
        return {"n": int(msg["n"]) + 1}  # TypeError on a str: the step fails, the reason must name the peer
    return {}
