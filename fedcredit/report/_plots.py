"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes (embedded in the page)."""

from __future__ import annotations

import io

import numpy as np

from ._format import _figure

_PALETTE = ["#1f5fa8", "#e07b22", "#2c9a56", "#b8323a", "#7d58b0", "#7f6a55"]


def _fig(w: float = 5.4, h: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#e3e8ee", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _plot_iv(iv: dict[str, float], own: set[str], kept: set[str] | None) -> bytes:
    items = sorted(iv.items(), key=lambda kv: kv[1])
    fig = _fig(6.4, max(2.4, 0.28 * len(items) + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    colors = [(_PALETTE[0] if f in own else _PALETTE[1]) if kept is None or f in kept else "#b7bec8"
              for f, _ in items]
    bars = ax.barh([f for f, _ in items], [v for _, v in items], color=colors)
    for b, (f, _) in zip(bars, items):
        if f not in own:
            b.set_hatch("///")
            b.set_edgecolor("white")
    for x in (0.02, 0.1, 0.3):
        if items and items[-1][1] > x * 0.8:
            ax.axvline(x, color="#8a96a3", linestyle=":", linewidth=1)
    ax.set_xlabel("information value")
    ax.tick_params(axis="y", labelsize=8)
    _style(ax)
    return _png(fig)


def _plot_importance(items: list[tuple], party: str, xlabel: str) -> bytes:
    items = sorted(items, key=lambda x: x[1])[-30:]  # the 30 most important
    fig = _fig(6.4, max(2.4, 0.28 * len(items) + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.barh([x[0] for x in items], [x[1] for x in items],
                   color=[_PALETTE[0] if x[3] == party else _PALETTE[1] for x in items])
    for b, x in zip(bars, items):
        if x[3] != party:
            b.set_hatch("///")
            b.set_edgecolor("white")
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", labelsize=8)
    _style(ax)
    return _png(fig)


def _plot_curves(curves: dict[str, list[tuple]], xlabel: str, ylabel: str, title: str, *, bars: bool = False) -> bytes:
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, pts) in enumerate(curves.items()):
        xs, ys = zip(*pts)
        if bars:
            ax.bar(xs, ys, color=_PALETTE[i % len(_PALETTE)], label=label, width=0.6)
        else:
            ax.plot(xs, ys, marker="o", color=_PALETTE[i % len(_PALETTE)], label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xs_all = [x for pts in curves.values() for x, _ in pts]
    ax.set_xlim(min(xs_all) - 0.5, max(xs_all) + 0.5)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    _style(ax)
    return _png(fig)


def _plot_deciles(lift: list[dict]) -> bytes:
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    g = [r["group"] for r in lift]
    ev = np.array([r["events"] for r in lift])
    non = np.array([r["count"] for r in lift]) - ev
    ax.bar(g, non, color=_PALETTE[0], label="non-events")
    ax.bar(g, ev, bottom=non, color=_PALETTE[3], label="events (default)")
    ax.set_xlabel("score decile (1 = highest predicted risk)")
    ax.set_ylabel("rows")
    ax.set_xticks(g)
    ax2 = ax.twinx()
    ax2.plot(g, [r["event_rate"] for r in lift], color="#1d2733", marker="o", label="event rate")
    ax2.set_ylabel("event rate")
    ax2.set_ylim(0, max(r["event_rate"] for r in lift) * 1.35 + 1e-9)
    ax.set_ylim(0, max(r["count"] for r in lift) * 1.35)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", ncol=3, frameon=False)
    ax.set_title("Score distribution by decile", fontsize=11)
    _style(ax)
    return _png(fig)


def _plot_traffic(per_step: dict[str, dict[str, int]]) -> bytes:
    steps = list(per_step)
    peers = sorted({p for d in per_step.values() for p in d})
    fig = _fig(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    bottom = np.zeros(len(steps))
    for i, p in enumerate(peers):
        vals = np.array([per_step[s].get(p, 0) for s in steps], dtype=float) / 1e6
        ax.bar(steps, vals, bottom=bottom, color=_PALETTE[i % len(_PALETTE)], label=f"to {p}")
        bottom += vals
    ax.set_ylabel("MB sent")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    _style(ax)
    return _png(fig)


def _score_figures(step: str, y, s, valid) -> list[str]:
    from ..models.metrics import auc, ks_curve, roc_curve

    sets = {"all rows": (y, s)}
    if valid is not None and valid.any() and (~valid).any():
        sets = {"train": (y[~valid], s[~valid]), "validation": (y[valid], s[valid])}
    figs = []
    fig = _fig(4.6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, (yy, ss)) in enumerate(sets.items()):
        if len(np.unique(yy)) < 2:
            continue
        fpr, tpr, _ = roc_curve(yy, ss)
        ax.plot(fpr, tpr, color=_PALETTE[i], label=f"{label} (AUC {auc(yy, ss):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    _style(ax)
    figs.append(_figure(_png(fig), f"{step}: ROC"))
    yy, ss = sets.get("validation", next(iter(sets.values())))
    thr, tpr, fpr = ks_curve(yy, ss)
    fig = _fig(4.6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.linspace(0, 1, len(tpr))
    ax.plot(x, tpr, color=_PALETTE[3], label="cumulative events")
    ax.plot(x, fpr, color=_PALETTE[0], label="cumulative non-events")
    k = int(np.argmax(np.abs(np.asarray(tpr) - np.asarray(fpr))))
    ax.vlines(x[k], fpr[k], tpr[k], color="#1d2733", linestyle=":", label=f"KS {abs(tpr[k] - fpr[k]):.3f}")
    ax.set_xlabel("share of rows, riskiest first")
    ax.set_ylabel("cumulative share")
    ax.set_title("KS", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    _style(ax)
    figs.append(_figure(_png(fig), f"{step}: KS curve ({'validation rows' if 'validation' in sets else 'all rows'})"))
    fig = _fig(5.2, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(float(np.min(ss)), float(np.max(ss)) + 1e-12, 31)
    ax.hist(ss[yy == 0], bins=bins, alpha=0.65, color=_PALETTE[0], label="non-events", density=True)
    ax.hist(ss[yy == 1], bins=bins, alpha=0.65, color=_PALETTE[3], label="events (default)", density=True)
    ax.set_xlabel("predicted probability of default")
    ax.set_ylabel("density")
    ax.set_title("Score distribution", fontsize=11)
    ax.legend(fontsize=8)
    _style(ax)
    figs.append(_figure(_png(fig), f"{step}: score distribution by class"))
    return figs
