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
  fields: most of them chosen by a peer — goes through ``_e``
  (``html.escape``) in :mod:`.console_pages`, which renders the pages; the
  Content-Security-Policy forbids scripts and foreign resources anyway, so an
  escaping slip still runs nothing.
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
from . import console_pages as pages
from .metrics import CONTENT_TYPE as METRICS_TYPE

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

    def _page_bytes(self, title: str, body: str, session: dict | None, refresh: int = 0) -> bytes:
        return pages.page(self.c, title, body, session, refresh)

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except Exception as exc:  # noqa: BLE001 - a page error never takes the console down
            log.exception("console error on %s %s", method, urlsplit(self.path).path)
            try:
                self._send(500, self._page_bytes("Error", f"<p class=bad>{pages._e(type(exc).__name__)}: {pages._e(exc)}</p>", None))
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
                self._send(403, self._page_bytes("Login", "<p class=bad>Wrong token.</p>", None))
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
            self._send(401, self._page_bytes("Login required", "<p>Open the login URL printed when the party started "
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
            self._send(200, self._page_bytes("Jobs", pages.jobs_page(self.c, query), session))
        elif parts[0] == "jobs" and len(parts) == 2 and is_name(parts[1]):
            self._send(200, self._page_bytes(f"Job {parts[1]}", *pages.job_page(self.c, parts[1], session)))
        elif parts[0] == "jobs" and len(parts) == 3 and is_name(parts[1]) and parts[2] == "report.html":
            from ..ids import state_path

            f = state_path(self.c.p.state_dir, "jobs", parts[1]) / "report.html"
            if f.is_file():
                self._send(200, f.read_bytes())
            else:
                self._send(404, self._page_bytes("No report", "<p>No report.html for this job yet.</p>", session))
        elif path == "/approvals":
            self._send(200, self._page_bytes("Approvals", pages.approvals_page(self.c, session), session))
        elif path == "/peers":
            self._send(200, self._page_bytes("Peers", pages.peers_page(self.c), session))
        elif path == "/audit":
            self._send(200, self._page_bytes("Audit", pages.audit_page(self.c, session), session))
        elif path == "/scoring":
            self._send(200, self._page_bytes("Scoring", pages.scoring_page(self.c), session))
        else:
            self._send(404, self._page_bytes("Not found", "<p>No such page.</p>", session))

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
            self._send(403, self._page_bytes("Refused", "<p class=bad>Missing or wrong CSRF token.</p>", session))
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
                self._send(404, self._page_bytes("Not found", "<p>No such action.</p>", session))
                return
        except FedcreditError as exc:
            msg = f"refused: {exc}"
        session["flash"] = msg
        self._redirect(back)
