"""Federated WOE/IV binning (step kind ``binning``).

Each party bins its own features locally (:mod:`fedcredit.models.woe`), with
``min_bin_count`` enforced by *merging* small bins before any count is formed.
The guest sends one Paillier ciphertext per aligned row (its label); each
host sums them per bin (``CipherVector.group_sum``) and returns the encrypted
event counts with the plain bin totals; the guest decrypts, merges (monotonic
method), computes WOE and IV and returns them to the host.

What each role learns: see ``docs/hetero_lr.md``.
"""

from __future__ import annotations

from ..context import StepContext
from .guest import run_guest
from .host import run_host
from .params import BinningParams

__all__ = ["run", "run_guest", "run_host", "BinningParams"]


def run(ctx: StepContext) -> dict:
    """Step entry point; leaves ``ctx.state["binning"]``.

    Guest state: ``{"bins": {feature: Bins}, "iv": {feature: IV for all parties}}``;
    host state: ``{"bins": {feature: Bins}, "iv": {own feature: IV}}``.
    """
    params = BinningParams.from_dict(dict(ctx.params), f"step {ctx.step!r} (binning)")
    if ctx.role == "guest":
        ctx.progress("binning: encrypting labels", 0.0)
        res = run_guest(ctx.channel, ctx.hosts, ctx.data, params)
        iv = {f: b.total_iv for f, b in res["bins"].items()}
        iv.update(res["host_iv"])
        ctx.state["binning"] = {"bins": res["bins"], "iv": iv}
        return {"iv": iv, "n_bins": {f: b.n_bins for f, b in res["bins"].items()}}
    if ctx.role == "host":
        bins = run_host(ctx.channel, ctx.guest, ctx.data, params)
        iv = {f: b.total_iv for f, b in bins.items()}
        ctx.state["binning"] = {"bins": bins, "iv": iv}
        return {"iv": iv}
    return {}
