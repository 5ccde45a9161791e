"""Scorecard (step kind ``scorecard``): points per bin from an LR on WOE features.

Purely local: each party turns its own coefficients and WOE bins into points
for its own bins (:mod:`fedcredit.models.scorecard`); the guest also holds the
base points (offset minus the intercept term). No message is sent, so nobody
learns another party's bins, coefficients or points. Each party writes
``scorecard.csv`` and ``scorecard.md`` (its own features) to its artifacts and
keeps ``ctx.state["scorecard"] = {"base": float (guest), "points": {feature: ndarray}}``.
"""

from __future__ import annotations

from ..binning import category_labels
from ...errors import DataError
from ...models import scorecard as sc
from ..context import StepContext
from .params import ScorecardParams

__all__ = ["run", "build"]


def build(part: dict, *, is_guest: bool, pdo=20.0, base_score=600.0, base_odds=50.0,
          category_names: dict | None = None) -> dict:
    """Points for a party's LR part (``features="woe"``); returns base, points and table rows.

    ``category_names`` maps a categorical feature to its category names (from
    the party's own table): its rows then show names, e.g. ``{married}``.
    """
    if part.get("preprocess") != "woe":
        raise DataError(f"a scorecard needs hetero_lr trained with features='woe' (got "
                        f"features={part.get('preprocess')!r})")
    scale = {"pdo": float(pdo), "base_score": float(base_score), "base_odds": float(base_odds)}
    points, rows = {}, []
    for f, w in zip(part["features"], part["coef"]):
        b = part["bins"][f]
        pts = sc.feature_points(w, b.woe, **scale)
        points[f] = pts
        for label, cnt, woe, pt in zip(category_labels(b, (category_names or {}).get(f)), b.counts, b.woe, pts):
            rows.append({"feature": f, "bin": label, "count": int(cnt), "woe": float(woe), "points": float(pt)})
    base = sc.base_points(part.get("intercept", 0.0), **scale) if is_guest else 0.0
    if is_guest:
        rows.insert(0, {"feature": "(base)", "bin": "", "count": 0, "woe": 0.0, "points": base})
    return {"base": base, "points": points, "rows": rows}


def run(ctx: StepContext) -> dict:
    params = ScorecardParams.coerce(ctx.params, f"step {ctx.step!r} (scorecard)")
    if ctx.role not in ("guest", "host"):
        return {}
    part = ctx.state.get("hetero_lr")
    if part is None:
        raise DataError("scorecard needs a hetero_lr step first")
    names = {f: ctx.data.category_names(f) for f in part.get("features", ())
             if ctx.data is not None and hasattr(ctx.data, "category_names") and ctx.data.category_names(f)}
    res = build(part, is_guest=ctx.role == "guest", category_names=names, **params.as_dict())
    csv_text, md_text = sc.table_text(res["rows"])
    files = [ctx.artifacts.save_bytes("scorecard.csv", csv_text.encode()),
             ctx.artifacts.save_bytes("scorecard.md", md_text.encode())]
    ctx.state["scorecard"] = {"base": res["base"], "points": res["points"]}
    return {"files": [str(p) for p in files], "features": list(res["points"])}
