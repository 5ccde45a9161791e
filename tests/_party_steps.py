"""Test-only step kinds, registered in party processes through FEDCREDIT_STEP_PLUGINS.

``wait``: every party writes ``started`` in its step's artifacts, then waits (checking
for cancellation) up to ``params["seconds"]``. ``boom``: raises on the party
named by ``params["party"]`` after the others started waiting for it.
"""

from __future__ import annotations

import time

from fedcredit.errors import DataError
from fedcredit.protocols.context import StepContext

PLUGINS = "wait=_party_steps:wait,boom=_party_steps:boom"


def wait(ctx: StepContext) -> dict:
    ctx.artifacts.save_bytes("started", b"1")  # the step directory's file on a party process
    total = float(ctx.params.get("seconds", 60))
    start = time.monotonic()
    end = start + total
    while time.monotonic() < end:
        ctx.check_cancelled()
        ctx.progress("waiting", min(1.0, (time.monotonic() - start) / total) if total > 0 else None)
        time.sleep(0.2)
    return {"waited": True}


def boom(ctx: StepContext) -> dict:
    if ctx.party == ctx.params.get("party"):
        raise DataError(f"synthetic failure on {ctx.party}")
    # everyone else waits for a message the failing party never sends
    others = [p for p in ctx.roles if p != ctx.party]
    ctx.channel.gather(others, "never", timeout=60)
    return {}
