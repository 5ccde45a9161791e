"""Feature selection by IV across parties (step kind ``select``).

The guest knows every feature's IV after ``binning``; it keeps features with
``IV >= iv_threshold`` and, if ``top_k`` is set, the ``top_k`` largest among
them (ties by name), and tells each host only which of *its own* features
were kept. Result: ``ctx.state["selected"]`` = this party's kept feature
names (the guest also keeps ``ctx.state["selected_all"]``).
"""

from __future__ import annotations

import enum

from ...errors import DataError, ProtocolError
from .._spec import Message, Spec
from ..context import StepContext
from .params import SelectParams

__all__ = ["run", "select_features", "Stage", "SPEC"]


class Stage(str, enum.Enum):
    KEPT = "kept"


SPEC = Spec("select", [Message(Stage.KEPT, "guest", "host", "job", {"kept": list})])


def select_features(iv: dict[str, float], *, iv_threshold: float = 0.02, top_k: int | None = None) -> list[str]:
    """Feature names kept by IV threshold then top-k (sorted by IV descending, then name)."""
    ranked = sorted((f for f, v in iv.items() if v >= iv_threshold), key=lambda f: (-iv[f], f))
    return ranked[:top_k] if top_k is not None else ranked


def run(ctx: StepContext) -> dict:
    params = SelectParams.coerce(ctx.params, f"step {ctx.step!r} (select)")
    s = SPEC.session(ctx.roles, ctx.party)
    if ctx.role == "guest":
        binning = ctx.state.get("binning")
        if binning is None:
            raise DataError("select needs a binning step first")
        kept = select_features(binning["iv"], iv_threshold=float(params.iv_threshold), top_k=params.top_k)
        for h in ctx.hosts:
            s.send(ctx.channel, h, Stage.KEPT, {"kept": [f for f in kept if f.startswith(f"{h}.")]})
        own = [f for f in kept if f.startswith(f"{ctx.party}.")]
        ctx.state["selected"] = own
        ctx.state["selected_all"] = kept
        return {"kept": kept, "dropped": sorted(set(binning["iv"]) - set(kept))}
    if ctx.role == "host":
        msg = s.recv(ctx.channel, ctx.guest, Stage.KEPT)
        own = set(ctx.data.feature_names)
        if any(type(f) is not str or f not in own for f in msg["kept"]):
            raise ProtocolError("select: the guest named features this host does not have")
        ctx.state["selected"] = list(msg["kept"])
        return {"kept": list(msg["kept"])}
    return {}
