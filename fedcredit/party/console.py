"""The operator's web console and ``/metrics``, served by the party process on its own listener.

``[console] listen = "127.0.0.1:8443"`` turns it on (off by default). It
serves HTTPS with the party's own certificate and key (plain HTTP only for an
``insecure`` test party) from a :class:`http.server.ThreadingHTTPServer` in a
daemon thread; every page is rendered on the server, no JavaScript.

Access, as Jupyter does it: at start-up the party draws a random token,
writes it to ``<state_dir>/console.token`` (mode 0600) and prints the login
URL ``https://host:port/?token=...`` on the ``party serve`` console (never in
the log file). Opening that URL sets a session cookie (``HttpOnly``,
``Secure``, ``SameSite=Strict``) and redirects to a URL without the token.
Prometheus may instead send ``Authorization: Bearer <token>`` (GET only).

Security reasoning:

* Every string shown — job names, purposes, parameters, reasons, audit
  fields: most of them chosen by a peer — goes through :func:`_e`
  (``html.escape``); the Content-Security-Policy forbids scripts and foreign
  resources anyway, so an escaping slip still runs nothing.
* Every state-changing action (approve, reject, cancel, verify, logout) is a
  POST that must carry the session's CSRF token (compared in constant time);
  with ``SameSite=Strict`` a foreign page's form does not even carry the
  cookie. GETs change nothing.
* Every action is recorded in the audit log (``console.action``, with the
  session's identity); approvals also get their ``job.approval`` record with
  the approver ``console session <id> (token login from <address>)``.
* Job ids in URLs are checked against the identifier grammar before they
  reach the store or the file system (``fedcredit.ids``).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import secrets
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

from .._io import write_text_atomic
from ..errors import FedcreditError
from ..ids import is_name
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import cert_expiries
from .store import TERMINAL

if TYPE_CHECKING:  # pragma: no cover
    from .party import Party

__all__ = ["Console", "TOKEN_FILE"]

log = logging.getLogger("fedcredit.console")

TOKEN_FILE = "console.token"
_SESSION_SECONDS = 12 * 3600
_BODY_MAX = 64 * 1024
_SAFE_PATH = re.compile(r"/(?:[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)?")
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    console: "Console"


class Console:
    """The console of one party (see the module docstring)."""

    def __init__(self, party: "Party"):
        self.p = party
        self.token = secrets.token_urlsafe(32)
        self._sessions: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._last_contact: dict[str, float] = {}
        self._server: _Server | None = None
        self._ssl: ssl.SSLContext | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.scheme = "http" if party.config.tls is None else "https"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> int:
        from ..config import parse_address

        host, port = parse_address(self.p.config.console.listen)
        host = host.strip("[]")
        self._write_token()
        server = _Server((host, port), _Handler)
        server.console = self
        tls = self.p.config.tls
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
            self._ssl = ctx
            # the handshake runs in the request's thread, not in the accept loop: a slow client blocks nobody
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"{self.p.name}-console", daemon=True)
        self._thread.start()
        log.info("console of %s on %s://%s:%d (login URL printed on the console; token in %s)", self.p.name,
                 self.scheme, host, self.port, self.p.state_dir / TOKEN_FILE)
        return self.port

    def reload_tls(self, cert, key) -> None:
        """Serve a renewed certificate on new connections (``fedcredit party reload``)."""
        if self._ssl is not None:
            self._ssl.load_cert_chain(str(cert), str(key))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """The login URL (holds the token: print it to the operator, never log it)."""
        from ..config import parse_address

        host, _ = parse_address(self.p.config.console.listen)
        if host in ("0.0.0.0", "", "::", "[::]"):
            host = "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}/?token={quote(self.token)}"

    def _write_token(self) -> None:
        write_text_atomic(self.p.state_dir / TOKEN_FILE, self.token + "\n")  # mode 0600: the token is a login

    # ------------------------------------------------------------------ sessions
    def check_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def new_session(self, address: str) -> tuple[str, dict]:
        sid = secrets.token_urlsafe(24)
        s = {"csrf": secrets.token_urlsafe(24), "created": time.time(), "flash": "",
             "identity": f"console session {sid[:8]} (token login from {address})"}
        with self._lock:
            now = time.time()
            for k in [k for k, v in self._sessions.items() if now - v["created"] > _SESSION_SECONDS]:
                del self._sessions[k]
            self._sessions[sid] = s
        self.p.audit.append("console.login", identity=s["identity"])
        return sid, s

    def session(self, sid: str | None) -> dict | None:
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None and time.time() - s["created"] > _SESSION_SECONDS:
                del self._sessions[sid]
                return None
            return s

    def end_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    # ------------------------------------------------------------------ data for pages
    def peers(self) -> list[dict]:
        """Each peer (and each revoked one): health now, revocation, last contact, job traffic."""
        from ..transport.control import ControlClient

        p = self.p
        revoked = p.peers.revoked()
        names = sorted(set(p.config.peers) | set(revoked))
        health: dict[str, object] = {}

        def check(peer: str) -> None:
            try:
                health[peer] = ControlClient(p.transport.grpc_channel(peer), peer, timeout=2.0).health()
                self._last_contact[peer] = time.time()
            except Exception as exc:  # noqa: BLE001 - shown, not raised
                health[peer] = str(exc)[:300]

        threads = [threading.Thread(target=check, args=(n,), daemon=True) for n in names if n not in revoked]
        for t in threads:
            t.start()
        for t in threads:
            t.join(3.0)
        m = p.metrics
        with m._lock:
            m._tail()
            traffic = dict(m.traffic)
            last_traffic = dict(m.last_traffic)
        out = []
        for n in names:
            last = max(self._last_contact.get(n, 0.0), last_traffic.get(n, 0.0))
            out.append({"peer": n, "address": p.config.peers.get(n, ""), "health": health.get(n),
                        "revoked": revoked.get(n), "last_contact": last,
                        **{f"{d}_{u}": traffic.get((n, d, u), 0) for d in ("sent", "received")
                           for u in ("bytes", "messages")}})
        return out

    def audit_page_data(self) -> tuple[list[dict], dict]:
        from ..serving.heads import fetch_held_heads

        records = self.p.audit.records()[-100:]
        try:
            held = fetch_held_heads(self.p.config, timeout=2.0)
        except Exception as exc:  # noqa: BLE001
            held = {"(all)": str(exc)}
        return records, held

    def verify_audit(self) -> str:
        from ..audit import verify

        _, held = self.audit_page_data()
        heads = [tuple(h) for v in held.values() if isinstance(v, list) for h in v]
        res = verify(self.p.audit.path, known_heads=heads)
        if res.ok:
            return (f"audit chain intact: {res.records} records, head {res.head[0]}:{res.head[1][:16]}..., "
                    f"checked against {len(heads)} head(s) held by peers")
        return f"audit chain BROKEN at line {res.first_bad_line}: {res.reason}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fedcredit-console"
    sys_version = ""

    def log_message(self, fmt, *args):  # the default logs the request line, which may hold the token
        log.debug("console %s %s", self.command, urlsplit(self.path).path)

    @property
    def c(self) -> Console:
        return self.server.console

    # ------------------------------------------------------------------ plumbing
    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _send(self, code: int, body: bytes, ctype: str = "text/html; charset=utf-8", headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, to: str, headers: dict | None = None):
        self._send(HTTPStatus.SEE_OTHER, b"", headers={"Location": to, **(headers or {})})

    def _cookie(self) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "fcsession":
                return v
        return None

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except Exception as exc:  # noqa: BLE001 - a page error never takes the console down
            log.exception("console error on %s %s", method, urlsplit(self.path).path)
            try:
                self._send(500, self._page("Error", f"<p class=bad>{_e(type(exc).__name__)}: {_e(exc)}</p>", None))
            except Exception:  # noqa: BLE001
                pass

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path.rstrip("/") or "/"
        sid = self._cookie()
        session = self.c.session(sid)
        token = (query.get("token") or [""])[0]
        if token and method == "GET":
            if not self.c.check_token(token):
                self._send(403, self._page("Login", "<p class=bad>Wrong token.</p>", None))
                return
            sid, session = self.c.new_session(self.client_address[0])
            if not _SAFE_PATH.fullmatch(path):  # "//evil.example" would make the redirect leave the console
                path = "/"
            rest = "&".join(f"{quote(k)}={quote(v)}" for k, vs in query.items() if k != "token" for v in vs)
            cookie = f"fcsession={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={_SESSION_SECONDS}"
            if self.c.scheme == "https":
                cookie += "; Secure"
            self._redirect(path + (f"?{rest}" if rest else ""), {"Set-Cookie": cookie})
            return
        bearer = self.headers.get("Authorization", "")
        by_bearer = bearer.startswith("Bearer ") and self.c.check_token(bearer[7:].strip())
        if session is None and not (by_bearer and method == "GET"):
            self._send(401, self._page("Login required", "<p>Open the login URL printed when the party started "
                                       "(the token is also in <code>&lt;state_dir&gt;/console.token</code>).</p>", None))
            return
        if method == "POST":
            self._post(path, session, sid)
            return
        self._get(path, query, session)

    # ------------------------------------------------------------------ GET
    def _get(self, path: str, query: dict, session: dict | None) -> None:
        parts = path.strip("/").split("/")
        if path == "/metrics":
            self._send(200, self.c.p.metrics.render(), METRICS_TYPE)
        elif path in ("/", "/jobs"):
            self._send(200, self._page("Jobs", self._jobs(query), session))
        elif parts[0] == "jobs" and len(parts) == 2 and is_name(parts[1]):
            self._send(200, self._page(f"Job {parts[1]}", *self._job(parts[1], session)))
        elif parts[0] == "jobs" and len(parts) == 3 and is_name(parts[1]) and parts[2] == "report.html":
            from ..ids import state_path

            f = state_path(self.c.p.state_dir, "jobs", parts[1]) / "report.html"
            if f.is_file():
                self._send(200, f.read_bytes())
            else:
                self._send(404, self._page("No report", "<p>No report.html for this job yet.</p>", session))
        elif path == "/approvals":
            self._send(200, self._page("Approvals", self._approvals(session), session))
        elif path == "/peers":
            self._send(200, self._page("Peers", self._peers(), session))
        elif path == "/audit":
            self._send(200, self._page("Audit", self._audit(session), session))
        elif path == "/scoring":
            self._send(200, self._page("Scoring", self._scoring(), session))
        else:
            self._send(404, self._page("Not found", "<p>No such page.</p>", session))

    def _page(self, title: str, body: str, session: dict | None, refresh: int = 0) -> bytes:
        p = self.c.p
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

    @staticmethod
    def _state(state: str) -> str:
        cls = "ok" if state == "succeeded" else "bad" if state in TERMINAL else "warn"
        return f"<span class={cls}>{_e(state)}</span>"

    def _jobs(self, query: dict) -> str:
        want = (query.get("state") or [""])[0]
        text = (query.get("q") or [""])[0]
        rows = self.c.p.store.jobs(limit=500)
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
            f"<td>{_e(r['role'])}</td><td>{_e(r['initiator'])}</td><td>{self._state(r['state'])}</td>"
            f"<td>{_when(r['created'])}</td><td>{_e(r['reason'][:200])}</td></tr>" for r in rows[:200])
        return (form + f"<table id=jobs><tr><th>job</th><th>name</th><th>our role</th><th>initiator</th><th>state</th>"
                f"<th>created</th><th>reason</th></tr>{body}</table><p>{len(rows)} job(s)</p>")

    def _job(self, job_id: str, session: dict | None) -> tuple[str, dict | None, int]:
        p = self.c.p
        row = p.store.job(job_id)
        if row is None:
            return "<p>No such job.</p>", session, 0
        live = p._jobs.get(job_id)
        detail = row["detail"]
        spec = detail.get("job") or {}
        parties = spec.get("parties") or {}
        out = [f"<p>State {self._state(row['state'])}" + (f": {_e(row['reason'])}" if row["reason"] else "") + "</p>",
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

    def _approvals(self, session: dict | None) -> str:
        p = self.c.p
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

    def _peers(self) -> str:
        rows = []
        for r in self.c.peers():
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
        certs = "".join(f"<li>{_e(k)}: expires {_when(v)}</li>" for k, v in cert_expiries(self.c.p).items())
        return ("<table id=peers><tr><th>peer</th><th>address</th><th>health</th><th>last contact</th>"
                "<th>job traffic sent (bytes / messages)</th><th>received</th></tr>" + "".join(rows) + "</table>"
                + (f"<p>Our certificates:</p><ul>{certs}</ul>" if certs else ""))

    def _audit(self, session: dict | None) -> str:
        records, held = self.c.audit_page_data()
        seq, h = self.c.p.audit.head()
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

    def _scoring(self) -> str:
        m = self.c.p.metrics
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

    # ------------------------------------------------------------------ POST
    def _post(self, path: str, session: dict | None, sid: str | None) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n > _BODY_MAX:
            self._send(413, b"request too large", "text/plain")
            return
        form = parse_qs(self.rfile.read(n).decode("utf-8", "replace")) if n else {}
        csrf = (form.get("csrf") or [""])[0]
        if session is None or not hmac.compare_digest(csrf.encode(), session["csrf"].encode()):
            self.c.p.audit.append("console.refused", path=path[:200], reason="missing or wrong CSRF token")
            self._send(403, self._page("Refused", "<p class=bad>Missing or wrong CSRF token.</p>", session))
            return
        p, who = self.c.p, session["identity"]
        reason = (form.get("reason") or [""])[0][:2000]
        parts = path.strip("/").split("/")
        back = "/jobs"
        try:
            if path == "/logout":
                p.audit.append("console.action", action="logout", by=who)
                self.c.end_session(sid)
                self._redirect("/", {"Set-Cookie": "fcsession=; Path=/; Max-Age=0"})
                return
            if path == "/audit/verify":
                msg = self.c.verify_audit()
                p.audit.append("console.action", action="audit.verify", by=who, outcome=msg[:500])
                back = "/audit"
            elif len(parts) == 3 and parts[0] == "approvals" and is_name(parts[1]) and parts[2] in ("approve", "reject"):
                back = "/approvals"
                p.audit.append("console.action", action=f"job.{parts[2]}", job_id=parts[1], by=who)
                msg = p.approvals.decide(p.name, parts[1], parts[2] == "approve", reason, approver=who)
            elif len(parts) == 3 and parts[0] == "jobs" and is_name(parts[1]) and parts[2] == "cancel":
                back = f"/jobs/{parts[1]}"
                p.audit.append("console.action", action="job.cancel", job_id=parts[1], by=who)
                msg = p.cancel_job(p.name, parts[1], reason or f"cancelled from the console by {who}")
            else:
                self._send(404, self._page("Not found", "<p>No such action.</p>", session))
                return
        except FedcreditError as exc:
            msg = f"refused: {exc}"
        session["flash"] = msg
        self._redirect(back)


def _decision(d) -> str:
    if not d:
        return "-"
    return "accepted" if d.get("accepted") else f"refused: {d.get('reason', '')}"
