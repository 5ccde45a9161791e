"""A real headless browser for console tests: Debian's ``chromium``, driven over ``--remote-debugging-pipe``.

The DevTools protocol runs over two pipes (fd 3: commands in, fd 4: replies
and events out; NUL-terminated JSON), so no websocket or selenium package is
needed. :func:`find_chromium` says why a browser is missing (tests skip with
that reason).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time

__all__ = ["Browser", "find_chromium", "dump_dom"]


def find_chromium() -> tuple[str | None, str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path, ""
    return None, "no chromium on PATH (install Debian's package: apt-get install -y chromium)"


_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--ignore-certificate-errors",
          "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--window-size=1280,900"]


def dump_dom(exe: str, url: str, profile: str, timeout: float = 60) -> str:
    """``chromium --headless --dump-dom URL`` (one page load in a throw-away browser)."""
    r = subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True,
                       text=True, timeout=timeout)
    return r.stdout


class Browser:
    """One headless chromium with one tab (see the module docstring)."""

    def __init__(self, exe: str, profile: str):
        cmd_r, cmd_w = os.pipe()  # we write commands to cmd_w; chromium reads fd 3
        out_r, out_w = os.pipe()  # chromium writes fd 4; we read out_r

        def child_fds():  # runs in the child: put the pipe ends at fds 3 and 4 (dup2 clears close-on-exec)
            a, b = os.dup(cmd_r), os.dup(out_w)  # first away from 3/4, in case either already sits there
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, *_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      "about:blank"], close_fds=False, preexec_fn=child_fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(out_r, "rb", buffering=0)
        self._id = 0
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self._r.read(65536)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                with self._cond:
                    if "id" in m:
                        self._replies[m["id"]] = m
                    else:
                        self._events.append(m)
                    self._cond.notify_all()

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params) -> dict:
        with self._cond:
            self._id += 1
            i = self._id
        msg = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self._w.write(json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        with self._cond:
            while i not in self._replies:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {method}")
                self._cond.wait(left)
            m = self._replies.pop(i)
        if "error" in m:
            raise RuntimeError(f"{method}: {m['error']}")
        return m.get("result", {})

    def _wait_load(self, since: int, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while not any(e.get("method") == "Page.loadEventFired" for e in self._events[since:]):
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("page did not load")
                self._cond.wait(left)

    def goto(self, url: str) -> str:
        with self._cond:
            n = len(self._events)
        self.call("Page.navigate", session=True, url=url)
        self._wait_load(n)
        return self.dom()

    def click(self, selector: str) -> str:
        """Click the element (a form's button: the browser submits the form, with its hidden CSRF field)."""
        with self._cond:
            n = len(self._events)
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")
        self._wait_load(n)
        return self.dom()

    def fill(self, selector: str, value: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def dom(self) -> str:
        return self.eval("document.documentElement.outerHTML") or ""

    def url(self) -> str:
        return self.eval("location.href") or ""

    def screenshot(self, path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
