"""The sections of the report page, one function each: cards, models, features, importance, curves, timings,
traffic, configuration, raw step results."""

from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import SCORES_FILE, load_scores as _load_scores
from ._format import _bytes, _e, _figure, _iv_strength, _num
from ._plots import (_plot_curves, _plot_deciles, _plot_importance, _plot_iv, _plot_traffic, _score_figures)


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
