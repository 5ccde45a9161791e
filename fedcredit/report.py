"""Run report as one self-contained HTML page (plots are embedded PNGs).

:func:`render_html` turns a party's ``report.json`` (see
:mod:`fedcredit.party.report`) into a page a risk analyst can open in a
browser: the job and this party's role, the effective configuration, the
timings of every step, the bytes sent and received per peer and message
kind, and plots drawn with matplotlib's Agg backend and embedded as base64
PNGs (no file next to the page is needed):

* **IV per feature** from a ``binning`` step: on a host its own features
  only; on the guest every feature it learned the IV of (its own marked);
  the features a ``select`` step kept are highlighted.
* **Training curves** where a step provides one: SecureBoost's train and
  validation log-loss per tree, hetero LR's validation loss per epoch.
* **ROC, KS curve and score distribution** on the guest (only the label
  holder has labels and scores): from a ``scores.npz`` a step leaves in its
  directory (``ctx.artifacts.save_scores``; :func:`fedcredit.artifacts.save_scores`), else the ROC/KS PNGs an
  ``evaluate`` step wrote, and the score deciles of its lift table.

Nothing here reads data that the party does not already hold: the page is
built from this party's own report and step directories.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import SCORES_FILE, load_scores as _load_scores, save_scores

__all__ = ["render_html", "write_html", "save_scores", "SCORES_FILE", "HTML_NAME"]

HTML_NAME = "report.html"

_PALETTE = ["#1f5fa8", "#e07b22", "#2c9a56", "#b8323a", "#7d58b0", "#7f6a55"]

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2733;
 background:#f4f6f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #d6dde6;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}
.sub{color:#5b6776;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #dbe2ea;border-radius:8px;padding:10px 14px;min-width:130px}
.card .k{color:#5b6776;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dbe2ea;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef2f7;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1d7a43;font-weight:600}.bad{color:#b8323a;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{background:#fff;border:1px solid #dbe2ea;border-radius:8px;margin:0;padding:8px;flex:0 1 330px}
figure.wide{flex:0 1 560px}
figure img{display:block;width:100%;height:auto}
figcaption{color:#5b6776;font-size:12px;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer;color:#1f5fa8}
pre{background:#fff;border:1px solid #dbe2ea;padding:8px;overflow:auto;max-height:360px;font-size:12px}
.note{color:#5b6776;font-size:13px}
"""


# --------------------------------------------------------------------------- public API

def write_html(report: dict, path: str | os.PathLike, *, job_dir: str | os.PathLike | None = None) -> Path:
    """Render ``report`` (a ``report.json`` dict) and write it atomically to ``path``."""
    path = Path(path)
    text = render_html(report, job_dir=Path(job_dir) if job_dir is not None else path.parent)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_html(report: dict, *, job_dir: str | os.PathLike | None = None) -> str:
    """The report page as a string.

    Parameters
    ----------
    report : dict
        A party's ``report.json`` content.
    job_dir : path, optional
        ``<state_dir>/jobs/<job_id>``: step directories there are searched
        for ``scores.npz`` and the PNGs an ``evaluate`` step wrote.

    Returns
    -------
    str
        A complete HTML document (UTF-8, no external resources).
    """
    job_dir = Path(job_dir) if job_dir is not None else None
    party = str(report.get("party", "?"))
    eff = report.get("effective_config") or {}
    role = eff.get("role", "?")
    steps = list(report.get("steps") or [])
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    w(f"<title>fedcredit report: {_e(report.get('name', ''))} on {_e(party)}</title>")
    w("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    w(f"<style>{_CSS}</style></head><body><main>")
    state = str(report.get("state", "?"))
    w(f"<h1>Job {_e(report.get('name', ''))} <span class='{'ok' if state == 'succeeded' else 'bad'}'>"
      f"{_e(state)}</span></h1>")
    w(f"<div class='sub'>job id <code>{_e(report.get('job_id', ''))}</code> · report of party <b>{_e(party)}</b> "
      f"(role <b>{_e(role)}</b>) · initiator {_e(eff.get('initiator', ''))} · written {_e(_when(report.get('written')))}"
      "</div>")
    if report.get("reason"):
        w(f"<p class='bad'>{_e(report['reason'])}</p>")
    w(_cards(report, steps))
    w(_models_section(report, steps, job_dir, role))
    w(_features_section(party, role, steps))
    w(_importance_section(party, role, steps))
    w(_curves_section(steps))
    w(_timing_section(report, steps))
    w(_traffic_section(steps))
    w(_config_section(report, eff))
    w(_steps_detail(steps))
    w("<p class='note'>Only the label holder (guest) has labels and scores, so ROC, KS and score plots appear on "
      "its report only; a host's report shows its own features' IV, its timings and what it sent and received. "
      "Generated by fedcredit.</p>")
    w("</main></body></html>")
    return "\n".join(x for x in out if x)


# --------------------------------------------------------------------------- sections

def _cards(report: dict, steps: list[dict]) -> str:
    total_sent = sum(int((s.get("traffic") or {}).get("bytes_sent", 0) or 0) for s in steps)
    total_recv = sum(int((s.get("traffic") or {}).get("bytes_received", 0) or 0) for s in steps)
    seconds = sum(float(s.get("seconds") or 0) for s in steps)
    cards = [("steps", f"{sum(1 for s in steps if s.get('state') == 'succeeded')}/{len(steps)}"),
             ("step time", f"{seconds:.1f} s"), ("sent", _bytes(total_sent)), ("received", _bytes(total_recv))]
    for s in steps:
        r = s.get("result") or {}
        if s.get("kind") == "psi" and "intersection" in r:
            cards.append(("intersection", f"{r['intersection']:,}"))
        v = r.get("validation") if isinstance(r.get("validation"), dict) else None
        if v and v.get("auc") is not None:
            cards.append((f"{s['step']} AUC (valid.)", f"{v['auc']:.4f}"))
            if v.get("ks") is not None:
                cards.append((f"{s['step']} KS (valid.)", f"{v['ks']:.4f}"))
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='k'>{_e(k)}</div><div class='v'>{_e(v)}</div></div>" for k, v in cards) + "</div>"


def _models_section(report: dict, steps: list[dict], job_dir: Path | None, role: str) -> str:
    parts: list[str] = []
    rows = []
    for s in steps:
        r = s.get("result") or {}
        for split in ("train", "validation"):
            m = r.get(split)
            if isinstance(m, dict) and m.get("auc") is not None:
                rows.append((s["step"], s["kind"], split, m.get("n", r.get("n_train" if split == "train" else
                                                                            "n_validation")),
                             m.get("auc"), m.get("ks"), m.get("gini", 2 * m["auc"] - 1), m.get("event_rate")))
    if rows:
        parts.append("<h3>Metrics</h3><table><tr><th>step</th><th>kind</th><th>rows</th><th>n</th><th>AUC</th>"
                     "<th>KS</th><th>Gini</th><th>event rate</th></tr>")
        for st, kind, split, n, a, k, g, er in rows:
            parts.append(f"<tr><td>{_e(st)}</td><td>{_e(kind)}</td><td>{split}</td><td class='n'>{_num(n, 'd')}</td>"
                         f"<td class='n'>{_num(a)}</td><td class='n'>{_num(k)}</td><td class='n'>{_num(g)}</td>"
                         f"<td class='n'>{_num(er)}</td></tr>")
        parts.append("</table>")
    figs: list[str] = []
    for s in steps:
        d = job_dir / s["step"] if job_dir is not None else None
        scores = _load_scores(d / SCORES_FILE) if d is not None else None
        r = s.get("result") or {}
        if scores is not None:
            figs += _score_figures(s["step"], *scores)
            continue
        plotted = set()
        for p in (r.get("plots") or []) if isinstance(r.get("plots"), list) else []:
            f = Path(p)
            if not f.is_file() and d is not None:
                f = d / Path(p).name
            if f.is_file() and f.suffix.lower() == ".png":
                figs.append(_figure(f.read_bytes(), f"{s['step']}: {f.stem.upper()} "
                                    f"({'validation rows' if 'ks' in f.stem else 'train and validation rows'})"))
                plotted.add(f.stem)
        lift = (r.get("validation") or {}).get("lift") if isinstance(r.get("validation"), dict) else None
        if lift:
            figs.append(_figure(_plot_deciles(lift), f"{s['step']}: score distribution by decile of the "
                                "validation rows (events and non-events per decile, event rate)"))
    if figs:
        parts.append("<h3>Plots</h3><div class='plots'>" + "".join(figs) + "</div>")
    lift_tables = [(s["step"], s["result"]["validation"]["lift"]) for s in steps
                   if isinstance((s.get("result") or {}).get("validation"), dict)
                   and s["result"]["validation"].get("lift")]
    for st, lift in lift_tables:
        parts.append(f"<h3>Lift by decile ({_e(st)}, validation rows)</h3><table><tr><th>decile</th><th>rows</th>"
                     "<th>events</th><th>event rate</th><th>lift</th><th>cum. events</th><th>scores</th></tr>")
        for g in lift:
            parts.append(f"<tr><td class='n'>{g['group']}</td><td class='n'>{g['count']}</td>"
                         f"<td class='n'>{g['events']}</td><td class='n'>{g['event_rate']:.3f}</td>"
                         f"<td class='n'>{g['lift']:.2f}</td><td class='n'>{g['cum_events_share']:.1%}</td>"
                         f"<td class='n'>{g['min_score']:.3f} – {g['max_score']:.3f}</td></tr>")
        parts.append("</table>")
    if not parts:
        if role == "guest":
            return ""
        return ("<h2>Model quality</h2><p class='note'>This party holds no labels: model quality is measured on the "
                "guest and is not shown here.</p>")
    return "<h2>Model quality</h2>" + "".join(parts)


def _features_section(party: str, role: str, steps: list[dict]) -> str:
    iv: dict[str, float] = {}
    kept: set[str] | None = None
    for s in steps:
        r = s.get("result") or {}
        if s.get("kind") == "binning" and isinstance(r.get("iv"), dict):
            iv.update({k: float(v) for k, v in r["iv"].items() if v is not None})
        if s.get("kind") == "select" and isinstance(r.get("kept"), list):
            kept = set(r["kept"])
    if not iv:
        return ""
    own = {f for f in iv if f.startswith(f"{party}.")}
    shown = iv if role == "guest" else {f: v for f, v in iv.items() if f in own}
    note = ("IV of every feature (the guest computes all IVs from the per-bin event counts; it never sees host "
            "values or thresholds); this party's own features are solid, the hosts' hatched."
            if role == "guest" else "IV of this party's own features (the guest computed them from encrypted "
                                    "per-bin label sums; this party never saw a label).")
    if kept is not None:
        note += " Features kept by selection are coloured; dropped ones grey."
    parts = ["<h2>Features</h2>", f"<p class='note'>{_e(note)}</p>",
             "<div class='plots'>", _figure(_plot_iv(shown, own, kept), "Information value per feature (dotted: 0.02 weak, 0.1 medium, "
                                               "0.3 strong)", wide=True), "</div>",
             "<table><tr><th>feature</th><th>owner</th><th>IV</th><th>strength</th>"
             + ("<th>kept</th>" if kept is not None else "") + "</tr>"]
    for f, v in sorted(shown.items(), key=lambda kv: -kv[1]):
        parts.append(f"<tr><td>{_e(f)}</td><td>{_e(f.split('.', 1)[0])}</td><td class='n'>{v:.4f}</td>"
                     f"<td>{_iv_strength(v)}</td>"
                     + (f"<td>{'yes' if f in kept else 'no'}</td>" if kept is not None else "") + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _importance_section(party: str, role: str, steps: list[dict]) -> str:
    """SecureBoost feature importance: total gain per feature (guest, every party's), split counts (host, own)."""
    parts = []
    for s in steps:
        r = s.get("result") or {}
        imp = r.get("importance")
        if s.get("kind") != "secureboost" or not isinstance(imp, list) or not imp:
            continue
        rows = [d for d in imp if isinstance(d, dict)]
        if role == "guest":
            items = [(str(d.get("name", "?")), float(d.get("gain", 0.0)), int(d.get("splits", 0)),
                      str(d.get("party", "?"))) for d in rows]
            note = ("Total split gain and split count per feature over all trees. Host features show the name the "
                    "host published, else <host>:feature#k (the guest knows a host feature only by its index); "
                    "this party's own features are solid, the hosts' hatched.")
            xlabel = "total gain"
        else:
            items = [(str(d.get("feature", "?")), float(d.get("splits", 0)), int(d.get("splits", 0)), party)
                     for d in rows]
            note = ("Splits of the model on this party's own features (a host knows which of its thresholds the "
                    "model uses, not their gains or the tree structure).")
            xlabel = "splits"
        items = [x for x in items if x[2] > 0]
        if not items:
            continue
        parts += [f"<h2>Feature importance ({_e(s.get('step', 'secureboost'))})</h2>", f"<p class='note'>{_e(note)}</p>",
                  "<div class='plots'>", _figure(_plot_importance(items, party, xlabel),
                                                 f"{xlabel} per feature", wide=True), "</div>",
                  "<table><tr><th>feature</th><th>owner</th><th>splits</th>"
                  + ("<th>total gain</th>" if role == "guest" else "") + "</tr>"]
        for name, v, n, owner in sorted(items, key=lambda x: -x[1]):
            parts.append(f"<tr><td>{_e(name)}</td><td>{_e(owner)}</td><td class='n'>{n}</td>"
                         + (f"<td class='n'>{v:.4g}</td>" if role == "guest" else "") + "</tr>")
        parts.append("</table>")
    return "".join(parts)


def _curves_section(steps: list[dict]) -> str:
    figs = []
    for s in steps:
        r = s.get("result") or {}
        if isinstance(r.get("per_tree"), list) and r["per_tree"]:
            curves = {}
            for key, label in (("train_loss", "train log-loss"), ("validation_loss", "validation log-loss")):
                pts = [(t.get("tree", i) + 1, t[key]) for i, t in enumerate(r["per_tree"]) if t.get(key) is not None]
                if pts:
                    curves[label] = pts
            if curves:
                figs.append(_figure(_plot_curves(curves, "tree", "log-loss", f"{s['step']}: loss per tree"),
                                    f"{s['step']}: log-loss after each tree"))
            secs = [(t.get("tree", i) + 1, t["seconds"]) for i, t in enumerate(r["per_tree"]) if "seconds" in t]
            if secs:
                figs.append(_figure(_plot_curves({"seconds": secs}, "tree", "seconds",
                                                 f"{s['step']}: seconds per tree", bars=True),
                                    f"{s['step']}: wall time of each tree (encrypt, histograms, splits)"))
        hist = r.get("history")
        if isinstance(hist, list) and hist and isinstance(hist[0], dict):
            curves = {}
            for key in sorted({k for h in hist for k in h if "loss" in k}):
                pts = [(h.get("epoch", i) + 1, h[key]) for i, h in enumerate(hist)
                       if isinstance(h.get(key), (int, float))]
                if pts:
                    curves[key.replace("_", " ")] = pts
            if curves:
                figs.append(_figure(_plot_curves(curves, "epoch", "loss", f"{s['step']}: loss per epoch"),
                                    f"{s['step']}: loss after each epoch (validation loss: the Taylor log-loss "
                                    "the protocol evaluates)"))
    if not figs:
        return ""
    return "<h2>Training</h2><div class='plots'>" + "".join(figs) + "</div>"


def _timing_section(report: dict, steps: list[dict]) -> str:
    if not steps:
        return ""
    parties = report.get("parties") or {}
    names = sorted(parties)
    head = "<tr><th>step</th><th>kind</th><th>state</th><th>seconds (this party)</th>"
    if names:
        head += "".join(f"<th>{_e(p)} s</th><th>{_e(p)} sent</th>" for p in names)
    parts = ["<h2>Steps and timings</h2>", "<table>", head + "</tr>"]
    for s in steps:
        st = s.get("state", "")
        row = (f"<tr><td>{_e(s['step'])}</td><td>{_e(s.get('kind', ''))}</td>"
               f"<td class='{'ok' if st == 'succeeded' else 'bad'}'>{_e(st)}</td>"
               f"<td class='n'>{_num(s.get('seconds'), '.2f')}</td>")
        for p in names:
            d = (parties[p].get("steps") or {}).get(s["step"], {})
            row += f"<td class='n'>{_num(d.get('seconds'), '.2f')}</td><td class='n'>{_bytes(d.get('bytes_sent'))}</td>"
        parts.append(row + "</tr>")
    parts.append("</table>")
    timing_rows = []
    for s in steps:
        t = (s.get("result") or {}).get("timings")
        if isinstance(t, dict):
            timing_rows += [(s["step"], k, v) for k, v in t.items() if isinstance(v, (int, float))]
    if timing_rows:
        parts.append("<h3>Where the time went (inside steps)</h3><table><tr><th>step</th><th>phase</th>"
                     "<th>seconds</th></tr>")
        parts += [f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td class='n'>{c:.2f}</td></tr>" for a, b, c in timing_rows]
        parts.append("</table>")
    return "".join(parts)


def _traffic_section(steps: list[dict]) -> str:
    rows = []
    per_step: dict[str, dict[str, int]] = {}
    for s in steps:
        tr = s.get("traffic") or {}
        for r in tr.get("rows") or []:
            rows.append((s["step"], r.get("peer", ""), r.get("direction", ""), r.get("kind", ""),
                         int(r.get("messages", 0) or 0), int(r.get("bytes", 0) or 0)))
        for peer, d in (tr.get("peers") or {}).items():
            per_step.setdefault(s["step"], {})[peer] = int(d.get("sent_bytes", 0) or 0)
    if not rows:
        return ""
    parts = ["<h2>What crossed the wire</h2>",
             "<p class='note'>Bytes this party sent to and received from each peer, per step and message kind "
             "(payload bytes as framed by the transport; every message was sent over mutual TLS).</p>"]
    if any(per_step.values()):
        parts.append("<div class='plots'>" + _figure(_plot_traffic(per_step), "bytes sent per step and peer", wide=True)
                     + "</div>")
    parts.append("<table><tr><th>step</th><th>peer</th><th>direction</th><th>message kind</th><th>messages</th>"
                 "<th>bytes</th></tr>")
    for st, peer, direction, kind, n, b in rows:
        parts.append(f"<tr><td>{_e(st)}</td><td>{_e(peer)}</td><td>{_e(direction)}</td><td>{_e(kind)}</td>"
                     f"<td class='n'>{n}</td><td class='n'>{_bytes(b)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def _config_section(report: dict, eff: dict) -> str:
    job = eff.get("job") or {}
    parts = ["<h2>Effective configuration</h2><table>"]
    for k, v in (("party", eff.get("party")), ("role", eff.get("role")), ("table", eff.get("table")),
                 ("columns used", ", ".join(eff.get("columns") or []) or "all allowed"),
                 ("purpose", (job.get("job") or {}).get("purpose")),
                 ("parties", ", ".join(f"{p} ({d.get('role')})" for p, d in (job.get("parties") or {}).items()))):
        parts.append(f"<tr><th>{_e(k)}</th><td>{_e(v if v is not None else '')}</td></tr>")
    for section in ("policy", "transport", "compute"):
        d = eff.get(section)
        if isinstance(d, dict):
            parts.append(f"<tr><th>{section}</th><td>" + "<br>".join(
                f"{_e(k)} = {_e(json.dumps(v))}" for k, v in d.items()) + "</td></tr>")
    decisions = report.get("decisions") or {}
    if decisions:
        parts.append("<tr><th>decisions</th><td>" + "<br>".join(
            f"{_e(p)}: {'accepted' if d.get('accepted') else 'refused'}"
            + (f" ({_e(d.get('reason'))})" if d.get("reason") else "") for p, d in decisions.items()) + "</td></tr>")
    parts.append("</table><h3>Step parameters</h3><table><tr><th>step</th><th>kind</th><th>parameters</th></tr>")
    for s in job.get("steps") or []:
        params = s.get("params") or {}
        parts.append(f"<tr><td>{_e(s.get('name'))}</td><td>{_e(s.get('kind'))}</td><td>"
                     + (", ".join(f"{_e(k)}={_e(json.dumps(v))}" for k, v in params.items()) or "defaults")
                     + "</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def _steps_detail(steps: list[dict]) -> str:
    parts = ["<h2>Step results (raw)</h2>"]
    for s in steps:
        text = json.dumps(s.get("result"), indent=1, sort_keys=True, default=str)
        if len(text) > 20000:
            text = text[:20000] + "\n..."
        parts.append(f"<details><summary>{_e(s['step'])} ({_e(s.get('kind', ''))})</summary><pre>{_e(text)}</pre>"
                     "</details>")
    return "".join(parts)


# --------------------------------------------------------------------------- plots

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
    from .models.metrics import auc, ks_curve, roc_curve

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


# --------------------------------------------------------------------------- small helpers

def _figure(png: bytes, caption: str, *, wide: bool = False) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<figure{' class=wide' if wide else ''}><img alt='{_e(caption)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x, spec: str = ".4f") -> str:
    if x is None or isinstance(x, bool):
        return "–"
    try:
        return format(int(x) if spec == "d" else float(x), spec)
    except (TypeError, ValueError):
        return _e(x)


def _bytes(n) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _when(t) -> str:
    if not t:
        return "?"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))


def _iv_strength(v: float) -> str:
    return ("useless" if v < 0.02 else "weak" if v < 0.1 else "medium" if v < 0.3 else "strong" if v < 0.5
            else "very strong (> 0.5: check for leakage)")
