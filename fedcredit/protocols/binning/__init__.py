"""Federated WOE/IV binning (step kind ``binning``).

Each party bins its own features locally (:mod:`fedcredit.models.woe`), with
``min_bin_count`` enforced by *merging* small bins before any count is formed.
The guest sends one ciphertext per aligned row (its label), Paillier or
Okamoto-Uchiyama (``he``); each host sums them per bin (one batch
``CipherVector.histogram``) and returns the encrypted event counts with the
plain bin totals; the guest decrypts and range-checks them (with OU, the guard
against key recovery: :func:`.guest.decrypt_counts`), merges (monotonic
method), computes WOE and IV and returns them to the host.

What each role learns: see ``docs/hetero_lr.md``.
"""

from __future__ import annotations

from dataclasses import replace

from ..context import StepContext
from .guest import run_guest
from .host import run_host
from .params import BinningParams

__all__ = ["run", "run_guest", "run_host", "BinningParams"]


def with_table_categories(params: BinningParams, table) -> BinningParams:
    """``params`` with the table's categorical columns added to ``categorical`` (issue #14).

    A categorical column (text, or declared in ``[tables.<t>] categorical``)
    gets one bin per category; categories with fewer than ``min_bin_count``
    rows (and those beyond ``max_bins``) are pooled into one "other" bin
    before any count is formed, exactly as for ``categorical`` named in the
    step's parameters (:func:`fedcredit.models.woe.fit_bins`).
    """
    extra = [f for f in getattr(table, "categorical_features", ()) if f not in params.categorical]
    return replace(params, categorical=list(params.categorical) + extra) if extra else params


def category_labels(bins, names) -> list[str]:
    """Bin labels of a categorical feature with its category **names** (``names[code]``), not codes.

    ``names`` None (a numeric feature, or a categorical one named in the binning
    parameters on integer codes) keeps :meth:`Bins.labels`.
    """
    labels = bins.labels()
    if not names or not bins.categorical:
        return labels
    out = []
    for cats in bins.categories:
        shown = [names[int(c)] if 0 <= int(c) < len(names) else f"{c:g}" for c in cats]
        out.append("{" + ", ".join(shown) + "}")
    return out + labels[len(out):]


def woe_table(bins: dict, table) -> dict:
    """This party's own bins for its report: ``{feature: [[label, rows, WOE], ...]}`` (category names, not codes)."""
    out = {}
    for f, b in bins.items():
        names = table.category_names(f) if hasattr(table, "category_names") else None
        out[f] = [[lab, int(n), round(float(w), 6)] for lab, n, w in zip(category_labels(b, names), b.counts, b.woe)]
    return out


def run(ctx: StepContext) -> dict:
    """Step entry point; leaves ``ctx.state["binning"]``.

    Guest state: ``{"bins": {feature: Bins}, "iv": {feature: IV for all parties}}``;
    host state: ``{"bins": {feature: Bins}, "iv": {own feature: IV}}``.
    """
    params = BinningParams.coerce(ctx.params, f"step {ctx.step!r} (binning)")
    params = with_table_categories(params, ctx.data)
    if ctx.role == "guest":
        ctx.progress("binning: encrypting labels", 0.0)
        res = run_guest(ctx.channel, ctx.hosts, ctx.data, params)
        iv = {f: b.total_iv for f, b in res["bins"].items()}
        iv.update(res["host_iv"])
        ctx.state["binning"] = {"bins": res["bins"], "iv": iv}
        return {"iv": iv, "n_bins": {f: b.n_bins for f, b in res["bins"].items()},
                "woe": woe_table(res["bins"], ctx.data)}
    if ctx.role == "host":
        bins = run_host(ctx.channel, ctx.guest, ctx.data, params)
        iv = {f: b.total_iv for f, b in bins.items()}
        ctx.state["binning"] = {"bins": bins, "iv": iv}
        # the host's own WOE per bin stays in its own report (a host result without "public" is not forwarded)
        return {"iv": iv, "woe": woe_table(bins, ctx.data)}
    return {}
