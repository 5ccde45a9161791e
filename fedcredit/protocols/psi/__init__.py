"""Private set intersection as a job step (``kind = "psi"``).

ECDH-PSI between one guest (the label holder) and N hosts over a prime-order
group (:mod:`fedcredit.crypto.psi`). After the step every party holds its own
rows of the intersection in one agreed order (ascending normalized id):
``ctx.state["psi"]`` is the :class:`PSIResult` and ``ctx.aligned`` (the step's output) the
party's table restricted to and ordered by the intersection.

Step parameters
---------------
mode : {"intersection", "cardinality"}, default="intersection"
    ``"cardinality"``: parties learn only the size (for a policy check before
    committing to a job); the table is left as it is.
reveal : {"own"}, default="own"
    Who learns membership: each party learns only which of its *own* ids are
    in the intersection.
group : {"curve25519", "ristretto255"}, default="curve25519"
chunk_size : int in [1024, 1048576], default=32768
    Points per message (32 bytes each).
"""

from __future__ import annotations

import time

from ...errors import ConfigError
from ..context import StepContext
from ._common import PSIResult
from .guest import run_guest
from .host import run_host
from .params import PSIParams

__all__ = ["run", "run_guest", "run_host", "PSIResult", "PSIParams"]


def run(ctx: StepContext) -> dict:
    """Run this party's side of PSI; see the module docstring for parameters.

    Returns
    -------
    dict
        ``intersection`` (size), ``seconds``, ``own_rows`` (this party's set
        size), ``mode``, and on the guest ``pairwise`` sizes per host.
    """
    params = PSIParams.coerce(ctx.params, "PSI")
    if ctx.role not in ("guest", "host"):
        # a data-less role (an arbiter key holder) has no ids: it takes no part and learns nothing
        return {"skipped": f"role {ctx.role!r} holds no rows"}
    if ctx.data is None:
        raise ConfigError(f"PSI: party {ctx.party!r} has no table")
    minimum = getattr(ctx.policy, "min_intersection", None) if ctx.policy is not None else None
    ids = ctx.data.ids
    common = dict(mode=params.mode, group=params.group, min_intersection=minimum,
                  source=f"party {ctx.party!r} ({ctx.data.source})", progress=ctx.progress)
    ctx.check_cancelled()
    t0 = time.perf_counter()
    if ctx.role == "guest":
        result = run_guest(ctx.channel, ids, hosts=ctx.hosts, chunk_size=params.chunk_size, **common)
    elif ctx.role == "host":
        result = run_host(ctx.channel, ids, guest=ctx.guest, hosts=ctx.hosts, **common)
    else:
        raise ConfigError(f"PSI: role {ctx.role!r} of {ctx.party!r} takes no part (only 'guest' and 'host')")
    seconds = time.perf_counter() - t0
    ctx.state["psi"] = result
    if result.index is not None:
        ctx.aligned = ctx.data.take(result.index)  # the step's output table: later steps see these rows
    out = {"intersection": result.size, "seconds": round(seconds, 3), "own_rows": len(ids), "mode": result.mode}
    if result.sizes:
        out["pairwise"] = dict(result.sizes)
    return out
