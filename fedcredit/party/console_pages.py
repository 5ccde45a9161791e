"""The console's pages: server-side HTML, every shown string escaped.

Rendering only: :mod:`fedcredit.party.console` serves them (routing, login, sessions,
CSRF checks and actions). Every string shown — job names, purposes, parameters,
reasons, audit fields: most of them chosen by a peer — goes through :func:`_e`
(``html.escape``, quotes too); the console's Content-Security-Policy forbids scripts
and foreign resources anyway, so an escaping slip still runs nothing.
"""

from __future__ import annotations

import html
import json
import time
from typing import TYPE_CHECKING

from .metrics import cert_expiries
from .store import TERMINAL

if TYPE_CHECKING:  # pragma: no cover
    from .console import Console

__all__ = ["page", "state_badge", "jobs_page", "job_page", "approvals_page", "peers_page", "audit_page",
           "scoring_page"]

_STYLE = """body{font:14px system-ui,sans-serif;margin:0;color:#222}header{background:#14325c;color:#fff;
padding:8px 16px;display:flex;gap:18px;align-items:center}header a{color:#dfe8f5;text-decoration:none}
header b{margin-right:12px}main{padding:12px 18px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eef2f8}
.ok{color:#176c2c;font-weight:600}.bad{color:#a11;font-weight:600}.warn{color:#a60;font-weight:600}
.flash{background:#fff6d6;border:1px solid #e3c65b;padding:6px 10px}.card{border:1px solid #ccd;padding:8px 12px;
margin:10px 0;border-radius:4px}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
progress{width:160px}form.inline{display:inline}button{margin:2px 4px}"""


def _e(v) -> str:
    """HTML-escape anything (quotes too: values also land in attributes)."""
    return html.escape(str(v), quote=True)


def _when(t) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "-"
    except (TypeError, ValueError, OverflowError):
        return "-"


def _bytes(n) -> str:
    n = float(n or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"



def page(c: "Console", title: str, body: str, session: dict | None, refresh: int = 0) -> bytes:
    p = c.p
    n = sum(1 for j in list(p._jobs.values()) if j.state == "pending-approval")
    flash = ""
    if session is not None and session.get("flash"):
        flash = f"<p class=flash id=flash>{_e(session['flash'])}</p>"
        session["flash"] = ""
    logout = ""
    if session is not None:
        logout = (f"<form class=inline method=post action='/logout'><input type=hidden name=csrf "
                  f"value='{_e(session['csrf'])}'><button>Log out</button></form>")
    meta = f"<meta http-equiv=refresh content='{int(refresh)}'>" if refresh else ""
    nav = (f"<header><b>fedcredit · {_e(p.name)}</b><a href='/jobs'>Jobs</a>"
           f"<a href='/approvals'>Approvals ({n})</a><a href='/peers'>Peers</a><a href='/audit'>Audit</a>"
           f"<a href='/scoring'>Scoring</a><a href='/metrics'>Metrics</a><span style='flex:1'></span>{logout}</header>")
    return (f"<!doctype html><html><head><meta charset=utf-8>{meta}<title>{_e(title)} · {_e(p.name)}</title>"
            f"<style>{_STYLE}</style></head><body>{nav}<main><h2>{_e(title)}</h2>{flash}{body}</main>"
            f"</body></html>").encode()

def state_badge(state: str) -> str:
    cls = "ok" if state == "succeeded" else "bad" if state in TERMINAL else "warn"
    return f"<span class={cls}>{_e(state)}</span>"

def jobs_page(c: "Console", query: dict) -> str:
    want = (query.get("state") or [""])[0]
    text = (query.get("q") or [""])[0]
    rows = c.p.store.jobs(limit=500)
    states = sorted({r["state"] for r in rows} | {"pending-approval", "running", "succeeded", "failed"})
    if want:
        rows = [r for r in rows if r["state"] == want]
    if text:
        rows = [r for r in rows if any(text.lower() in str(r[k]).lower() for k in ("job_id", "name", "initiator"))]
    opts = "".join(f"<option{' selected' if s == want else ''} value='{_e(s)}'>{_e(s)}</option>" for s in states)
    form = (f"<form method=get action='/jobs'>State <select name=state><option value=''>any</option>{opts}</select>"
            f" Search <input name=q value='{_e(text)}'> <button>Filter</button></form>")
    body = "".join(
        f"<tr><td><a href='/jobs/{_e(r['job_id'])}'>{_e(r['job_id'])}</a></td><td>{_e(r['name'])}</td>"
        f"<td>{_e(r['role'])}</td><td>{_e(r['initiator'])}</td><td>{state_badge(r['state'])}</td>"
        f"<td>{_when(r['created'])}</td><td>{_e(r['reason'][:200])}</td></tr>" for r in rows[:200])
    return (form + f"<table id=jobs><tr><th>job</th><th>name</th><th>our role</th><th>initiator</th><th>state</th>"
            f"<th>created</th><th>reason</th></tr>{body}</table><p>{len(rows)} job(s)</p>")

def job_page(c: "Console", job_id: str, session: dict | None) -> tuple[str, dict | None, int]:
    p = c.p
    row = p.store.job(job_id)
    if row is None:
        return "<p>No such job.</p>", session, 0
    live = p._jobs.get(job_id)
    detail = row["detail"]
    spec = detail.get("job") or {}
    parties = spec.get("parties") or {}
    out = [f"<p>State {state_badge(row['state'])}" + (f": {_e(row['reason'])}" if row["reason"] else "") + "</p>",
           f"<p>Name {_e(row['name'])} · purpose {_e(spec.get('job', {}).get('purpose', ''))} · initiator "
           f"{_e(row['initiator'])} · our role {_e(row['role'])} · created {_when(row['created'])}</p>"]
    if parties:
        out.append("<table><tr><th>party</th><th>role</th><th>table</th><th>decision</th></tr>" + "".join(
            f"<tr><td>{_e(n)}</td><td>{_e(v.get('role', ''))}</td><td>{_e(v.get('table') or '-')}</td>"
            f"<td>{_e(_decision(detail['decisions'].get(n)))}</td></tr>" for n, v in parties.items()) + "</table>")
    if live is not None:
        progress: dict[tuple[str, str], dict] = {}
        for ev in list(live.events):
            if ev["kind"] in ("progress", "step") and ev.get("step"):
                progress[(ev["party"], ev["step"])] = ev
        if progress:
            out.append("<h3>Live progress</h3><table id=progress><tr><th>party</th><th>step</th><th>state</th>"
                       "<th>progress</th><th>message</th></tr>")
            for (party, step), ev in progress.items():
                frac = ev.get("fraction")
                bar = f"<progress max=1 value='{float(frac):.3f}'></progress> {100 * float(frac):.0f}%" \
                    if frac is not None else ""
                st = ev["state"] or ("running" if ev["kind"] == "progress" else "")
                out.append(f"<tr><td>{_e(party)}</td><td>{_e(step)}</td><td>{_e(st)}</td><td>{bar}</td>"
                           f"<td>{_e(ev['message'][:200])}</td></tr>")
            out.append("</table>")
        events = [ev for ev in list(live.events) if ev["kind"] != "progress"][-25:]  # progress: the table above
        out.append("<h3>Events</h3><table id=events><tr><th>time</th><th>party</th><th>kind</th><th>state</th>"
                   "<th>message</th></tr>" + "".join(
                       f"<tr><td>{_when(ev['time'])}</td><td>{_e(ev['party'])}</td><td>{_e(ev['kind'])}</td>"
                       f"<td>{_e(ev['state'])}</td><td>{_e(ev['message'][:300])}</td></tr>" for ev in events)
                   + "</table>")
    steps = detail.get("steps") or []
    if steps:
        out.append("<h3>Steps</h3><table id=steps><tr><th>party</th><th>step</th><th>kind</th><th>state</th>"
                   "<th>seconds</th><th>sent</th></tr>")
        for s in steps:
            t = (s.get("result") or {}).get("traffic") or {}
            sec = s.get("seconds")
            out.append(f"<tr><td>{_e(s['party'])}</td><td>{_e(s['step'])}</td><td>{_e(s['kind'])}</td>"
                       f"<td>{_e(s['state'])}</td><td>{'' if sec is None else f'{float(sec):.2f}'}</td>"
                       f"<td>{_bytes(t.get('bytes_sent', 0)) if t else ''}</td></tr>")
        out.append("</table>")
    from ..ids import state_path

    if (state_path(p.state_dir, "jobs", job_id) / "report.html").is_file():
        out.append(f"<p><a id=report href='/jobs/{_e(job_id)}/report.html'>report.html</a></p>")
    running = row["state"] not in TERMINAL
    if running and session is not None:
        out.append(f"<form method=post action='/jobs/{_e(job_id)}/cancel'><input type=hidden name=csrf "
                   f"value='{_e(session['csrf'])}'>Reason <input name=reason> <button id=cancel>Cancel job"
                   f"</button></form>")
    return "".join(out), session, 2 if running else 0

def approvals_page(c: "Console", session: dict | None) -> str:
    p = c.p
    jobs = p.approvals.pending(p.name)
    if not jobs:
        return "<p id=empty>No job is waiting for approval.</p>"
    csrf = _e(session["csrf"]) if session else ""
    out = []
    for j in jobs:
        jid = _e(j["job_id"])
        steps = "".join(
            f"<tr><td>{_e(s['name'])}</td><td>{_e(s['kind'])}</td><td><code>{_e(json.dumps(s['params'], sort_keys=True))}"
            f"</code></td><td>" + "<br>".join(f"<b>{_e(q)}</b>: {_e(t)}" for q, t in s["reveals"].items())
            + "</td></tr>" for s in j["steps"])
        out.append(
            f"<div class=card id='pending-{jid}'><h3>{jid}</h3><p>Proposed by <b>{_e(j['proposer'])}</b> · purpose "
            f"<b>{_e(j['purpose'] or '-')}</b> · expires {_when(j['expires'])}</p>"
            f"<p>Parties: {_e(', '.join(f'{q} ({r})' for q, r in j['parties'].items()))}</p>"
            f"<p>Our table <b>{_e(j['table'] or '-')}</b>; columns it would use: "
            f"{_e(', '.join(j['columns']) or 'every column of the table')}</p>"
            f"<table><tr><th>step</th><th>kind</th><th>parameters</th><th>what each party learns</th></tr>{steps}"
            f"</table><form method=post action='/approvals/{jid}/approve' class=inline><input type=hidden "
            f"name=csrf value='{csrf}'><input name=reason placeholder='note (optional)'><button id='approve-{jid}'>"
            f"Approve</button></form><form method=post action='/approvals/{jid}/reject' class=inline><input "
            f"type=hidden name=csrf value='{csrf}'><input name=reason placeholder='reason (required)' required>"
            f"<button id='reject-{jid}'>Reject</button></form></div>")
    return "".join(out)

def peers_page(c: "Console") -> str:
    rows = []
    for r in c.peers():
        h = r["health"]
        if r["revoked"] is not None:
            status = f"<span class=bad>revoked</span> {_e(json.dumps(r['revoked'], sort_keys=True)[:200])}"
        elif isinstance(h, dict):
            status = (f"<span class=ok>serving</span> v{_e(h.get('version'))}, {_e(h.get('running_jobs'))} job(s)"
                      if h.get("serving") else "<span class=warn>not serving</span>")
            exp = h.get("cert_not_after") or 0
            if exp and exp - time.time() < 30 * 86400:
                status += f" <span class=warn>certificate expires {_when(exp)}</span>"
        else:
            status = f"<span class=bad>unreachable</span> {_e(h)}"
        rows.append(f"<tr><td>{_e(r['peer'])}</td><td>{_e(r['address'])}</td><td>{status}</td>"
                    f"<td>{_when(r['last_contact'])}</td><td>{_bytes(r['sent_bytes'])} / {int(r['sent_messages'])}"
                    f"</td><td>{_bytes(r['received_bytes'])} / {int(r['received_messages'])}</td></tr>")
    certs = "".join(f"<li>{_e(k)}: expires {_when(v)}</li>" for k, v in cert_expiries(c.p).items())
    return ("<table id=peers><tr><th>peer</th><th>address</th><th>health</th><th>last contact</th>"
            "<th>job traffic sent (bytes / messages)</th><th>received</th></tr>" + "".join(rows) + "</table>"
            + (f"<p>Our certificates:</p><ul>{certs}</ul>" if certs else ""))

def audit_page(c: "Console", session: dict | None) -> str:
    records, held = c.audit_page_data()
    seq, h = c.p.audit.head()
    csrf = _e(session["csrf"]) if session else ""
    out = [f"<p>Head <code id=head>{seq}:{_e(h)}</code></p>",
           f"<form method=post action='/audit/verify'><input type=hidden name=csrf value='{csrf}'>"
           f"<button id=verify>Verify the chain</button></form>",
           "<h3>Heads of our log held by each peer</h3><table id=held><tr><th>peer</th><th>heads held</th></tr>"]
    for peer, v in sorted(held.items()):
        text = ", ".join(f"{s}:{str(x)[:12]}…" for s, x in v[-5:]) if isinstance(v, list) else f"unavailable: {v}"
        out.append(f"<tr><td>{_e(peer)}</td><td>{_e(text or 'none yet')}</td></tr>")
    out.append("</table><h3>Latest records</h3><table id=records><tr><th>seq</th><th>time</th><th>kind</th>"
               "<th>fields</th></tr>")
    for r in reversed(records):
        f = json.dumps(r.get("fields"), sort_keys=True)
        out.append(f"<tr><td>{_e(r.get('seq'))}</td><td>{_e(str(r.get('time', ''))[:19])}</td><td>{_e(r.get('kind'))}"
                   f"</td><td><code>{_e(f[:400] + ('…' if len(f) > 400 else ''))}</code></td></tr>")
    return "".join(out) + "</table>"

def scoring_page(c: "Console") -> str:
    m = c.p.metrics
    with m._lock:
        m._tail()
        scoring = dict(m.scoring)
        refusals = {k: v for k, v in m.refusals.items() if k[0] == "scoring"}
        latency = {k: (sum(h.counts[-1:]), h.sum) for k, h in m.latency.items()}
    rows = "".join(f"<tr><td>{_e(r)}</td><td>{_e(pu)}</td><td>{_e(o)}</td><td>{n}</td></tr>"
                   for (r, pu, o), n in sorted(scoring.items()))
    ref = "".join(f"<tr><td>{_e(reason)}</td><td>{n}</td></tr>" for (_, reason), n in sorted(refusals.items()))
    lat = "".join(f"<tr><td>{_e(k)}</td><td>{n}</td><td>{(s / n if n else 0):.3f}</td></tr>"
                  for k, (n, s) in sorted(latency.items()))
    none = "<tr><td colspan=4>none yet</td></tr>"
    rows, ref, lat = rows or none, ref or none, lat or none
    return ("<h3>Requests per requester and purpose</h3><table id=scoring><tr><th>requester</th><th>purpose</th>"
            f"<th>outcome</th><th>requests</th></tr>{rows}</table><h3>Refusals</h3><table><tr><th>reason</th>"
            f"<th>count</th></tr>{ref}</table><h3>Latency (since start)</h3><table><tr><th>requester</th>"
            f"<th>requests</th><th>mean seconds</th></tr>{lat}</table>")


def _decision(d) -> str:
    if not d:
        return "-"
    return "accepted" if d.get("accepted") else f"refused: {d.get('reason', '')}"
