"""The operator's web console in a real headless browser (issue #18 item 2), and its access control.

Two parties run in this process: bank (guest, initiator) and chain (host,
``[policy] approval = "manual"``, console on a free loopback port). Debian's
``chromium`` is driven over its DevTools pipe (tests/_browser.py): log in with
the token URL, approve a pending job with the page's button, watch the running
job's progress change, verify the audit chain. Set FEDCREDIT_SCREENSHOTS=DIR to
keep the screenshots (docs/img/ holds the README's).
"""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import ssl
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fedcredit.config import load_party_config
from fedcredit.errors import ConfigError
from fedcredit.launcher import write_federation
from fedcredit.party import register_plugin_steps

from _inproc_fed import running_parties, submit, wait_for
from conftest import DATA, data_path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from _browser import Browser, dump_dom, find_chromium  # noqa: E402
from _party_steps import PLUGINS  # noqa: E402

PARTIES2 = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None)}
EVIL = "<img src=x onerror=alert(1)>risk"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data_path("credit3", "bank.csv")
    register_plugin_steps(PLUGINS)
    root = tmp_path_factory.mktemp("console")
    kinds = ["handshake", "wait"]
    configs = write_federation(root, DATA, parties=PARTIES2, transport={"deadline": 5.0},
                               policy={"bank": {"allowed_steps": kinds},
                                       "chain": {"allowed_steps": kinds, "approval": "manual"}})
    with open(configs["chain"], "a", encoding="utf-8") as f:
        f.write('\n[console]\nlisten = "127.0.0.1:0"\n')
    with running_parties(root, configs) as fed:
        yield fed


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("FEDCREDIT_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _submit(fed, name, steps, purpose="credit-risk-model"):
    return submit(fed, name, steps, parties=PARTIES2, purpose=purpose)


def _wait(pred, timeout=30.0, what="condition"):
    return wait_for(pred, timeout, what, interval=0.1)


def _queued(party, job_id):
    return any(j["job_id"] == job_id for j in party.pending_jobs(party.name))


def _base(console) -> str:
    return f"https://127.0.0.1:{console.port}"


def _opener(fed):
    root, configs, parties = fed
    ctx = ssl.create_default_context(cafile=str(root / "certs" / "ca.crt"))
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None

    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor(jar),
                                       NoRedirect()), jar


def _status(opener, req) -> tuple[int, str]:
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_token_file_csrf_and_bearer(fed):
    root, configs, parties = fed
    chain = parties["chain"]
    c = chain.console
    token_file = chain.state_dir / "console.token"
    assert token_file.read_text().strip() == c.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert c.token not in (chain.state_dir / "party.log").read_text()  # printed by `party serve`, never logged
    opener, jar = _opener(fed)
    assert _status(opener, _base(c) + "/jobs")[0] == 401
    assert _status(opener, _base(c) + "/jobs?token=wrong")[0] == 403
    code, _ = _status(opener, _base(c) + f"/jobs?token={c.token}")
    assert code == 303 and any(k.name == "fcsession" and k.secure for k in jar)
    assert _status(opener, _base(c) + "/jobs")[0] == 200  # the cookie alone
    # the login redirect stays on the console (no open redirect to another site)
    ctx = ssl.create_default_context(cafile=str(root / "certs" / "ca.crt"))
    for target in (f"//evil.example/x?token={c.token}", f"/\\evil.example?token={c.token}"):
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=10)
        conn.request("GET", target)
        r = conn.getresponse()
        loc = r.getheader("Location")
        conn.close()
        assert r.status == 303 and loc.startswith("/") and not loc.startswith(("//", "/\\")), loc
    # attack: a state change without the session's CSRF token (e.g. a form on another site) is refused and audited
    before = chain.audit.head()[0]
    code, body = _status(opener, urllib.request.Request(_base(c) + "/audit/verify", data=b"csrf=guess", method="POST"))
    assert code == 403 and "CSRF" in body
    assert any(r["kind"] == "console.refused" for r in chain.audit.records()[before:])
    # Prometheus: bearer token, GET only
    req = urllib.request.Request(_base(c) + "/metrics", headers={"Authorization": f"Bearer {c.token}"})
    plain, _ = _opener(fed)
    code, text = _status(plain, req)
    assert code == 200 and "fedcredit_audit_sequence" in text
    assert _status(plain, urllib.request.Request(_base(c) + "/metrics", headers={"Authorization": "Bearer nope"}))[0] == 401
    post = urllib.request.Request(_base(c) + "/audit/verify", data=b"", method="POST",
                                  headers={"Authorization": f"Bearer {c.token}"})
    assert _status(plain, post)[0] == 401


def test_console_in_a_headless_browser(fed, shots, tmp_path):
    exe, why = find_chromium()
    if exe is None:
        print(f"skipping the browser test: {why}")
        pytest.skip(why)
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    c = chain.console
    # chromium's plain --dump-dom mode: the token URL logs in and lands on the jobs page
    dom = dump_dom(exe, c.url, str(tmp_path / "profile-dump"))
    assert 'id="jobs"' in dom and "Jobs" in dom, dom[:500]

    b = Browser(exe, str(tmp_path / "profile"))
    try:
        assert "Login required" in b.goto(_base(c) + "/jobs")
        dom = b.goto(c.url)
        assert "token=" not in b.url() and 'id="jobs"' in dom  # the token left the address bar

        # a proposal waits in chain's queue; its purpose (peer-chosen) is shown as text, not markup
        job_id = _submit(fed, "console-job", [("handshake", "hello", {}), ("wait", "train", {"seconds": 6})], purpose=EVIL)
        _wait(lambda: _queued(chain, job_id), what="the pending job")
        dom = b.goto(_base(c) + "/approvals")
        assert job_id in dom and "Proposed by <b>bank</b>" in dom
        assert "&lt;img src=x onerror=alert(1)&gt;risk" in dom
        assert b.eval("document.images.length") == 0
        assert "columns it would use:" in dom and "what each party learns" in dom
        assert "every party's row count" in dom
        b.screenshot(shots / "console-approvals.png")
        time.sleep(0.5)
        assert chain.store.job(job_id)["state"] == "pending-approval"
        assert bank.store.job(job_id)["state"] == "proposed"

        # approve with the page's button (the form carries the CSRF token)
        b.fill(f"#pending-{job_id} input[name=reason]", "ok for Q3")
        dom = b.click(f"#approve-{job_id}")
        assert "approved by console session" in dom, dom[-1500:]
        rec = next(r["fields"] for r in chain.audit.records() if r["kind"] == "job.approval"
                   and r["fields"]["job_id"] == job_id)
        assert rec["approver"].startswith("console session ") and rec["reason"] == "ok for Q3"

        # the job starts on every party; its page shows live progress that changes (meta refresh)
        _wait(lambda: bank.store.job(job_id)["state"] == "running" and chain.store.job(job_id)["state"] == "running",
              what="the job running on both parties")
        b.goto(_base(c) + f"/jobs/{job_id}")

        def progress():
            d = b.dom()
            m = re.search(r'<progress max="1" value="([0-9.]+)"', d)
            return float(m.group(1)) if m else None

        first = _wait(progress, what="a progress bar")
        _wait(lambda: (progress() or 0) > first, timeout=15, what="the progress bar to move on its own")
        assert "Live progress" in b.dom()
        b.screenshot(shots / "console-job.png")
        _wait(lambda: chain.store.job(job_id)["state"] == "succeeded" and bank.store.job(job_id)["state"] == "succeeded",
              what="success")
        _wait(lambda: (chain.state_dir / "jobs" / job_id / "report.html").exists(), what="report.html")
        dom = b.goto(_base(c) + f"/jobs/{job_id}")
        assert 'id="report"' in dom and ">succeeded<" in dom
        assert "fedcredit" in b.goto(_base(c) + f"/jobs/{job_id}/report.html").lower()

        dom = b.goto(_base(c) + "/jobs?state=succeeded")
        assert job_id in dom
        b.screenshot(shots / "console-jobs.png")

        dom = b.goto(_base(c) + "/peers")
        assert "bank" in dom and "serving" in dom
        b.screenshot(shots / "console-peers.png")

        b.goto(_base(c) + "/audit")
        dom = b.click("#verify")
        assert "audit chain intact" in dom, dom[-2000:]
        b.screenshot(shots / "console-audit.png")
        assert any(r["kind"] == "console.action" and r["fields"]["action"] == "audit.verify"
                   for r in chain.audit.records())

        dom = b.goto(_base(c) + "/scoring")
        assert "Requests per requester and purpose" in dom
        b.screenshot(shots / "console-scoring.png")
    finally:
        b.close()


def test_console_config(tmp_path):
    p = tmp_path / "p.toml"
    base = '[party]\nname = "bank"\nlisten = "127.0.0.1:0"\nstate_dir = "s"\ninsecure = true\n'
    assert load_party_config(p.write_text(base) and p).console.listen is None  # off by default
    p.write_text(base + '[console]\nlisten = "127.0.0.1:8443"\n')
    assert load_party_config(p).console.listen == "127.0.0.1:8443"
    p.write_text(base + '[console]\nlisten = "0.0.0.0:8443"\n')
    with pytest.raises(ConfigError, match=r"\[console\]\.listen: a party without \[tls\] serves its console over plain"):
        load_party_config(p)
    p.write_text(base + '[console]\nlisten = "nowhere"\ntoken = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_party_config(p)
    assert "[console].listen" in str(e.value) and "[console].token: unknown key" in str(e.value)

