"""Following a job: its events as console lines, then its report as a summary.

Shared by ``fedcredit run`` and ``fedcredit demo`` (:mod:`fedcredit.cli`) and by the
Python API (:meth:`fedcredit.api.PartyClient.follow`), which sits below the CLI: so it
lives here, on the API's layer, and needs nothing but the standard library.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

__all__ = ["EventDisplay", "human_bytes", "wait_report", "summarize_report"]


def human_bytes(n: float) -> str:
    """``n`` bytes as ``"512 B"``, ``"1.5 kB"``, ``"2.0 MB"`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class EventDisplay:
    """Progress lines: a live, rewritten status line on a terminal; plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = False

    def line(self, text: str = "") -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self._live = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def live(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text[: shutil.get_terminal_size().columns - 1])
            self.stream.flush()
            self._live = True
        else:
            self.line(text)

    def event(self, e: dict) -> None:
        """One job event (as :meth:`ControlClient.watch` yields them) as a line."""
        p = f"[{e['party']}]"
        kind, state = e["kind"], e["state"]
        if kind == "decision":
            self.line(f"{p} {state}" + (f": {e['message']}" if e["message"] else ""))
        elif kind == "state":
            self.line(f"{p} job {state}" + (f": {e['message']}" if e["message"] else ""))
        elif kind == "step":
            d = e.get("detail") or {}
            if state == "succeeded":
                extra = f", {human_bytes(d['bytes_sent'])} sent" if "bytes_sent" in d else ""
                self.line(f"{p} step {e['step']} done in {d.get('seconds', 0):.2f}s{extra}")
            elif state == "running":
                self.line(f"{p} step {e['step']} ({d.get('kind', '')}) started")
            else:
                self.line(f"{p} step {e['step']} {state}: {e['message']}")
        elif kind == "progress":
            frac = e.get("fraction")
            pct = f" {frac * 100:3.0f}%" if frac is not None else ""
            self.live(f"{p} {e['step']}{pct} {e['message']}")


def wait_report(path: Path, state: str) -> dict | None:
    """The job's ``report.json`` once it records ``state`` (written just after the job ends; ~10 s at most)."""
    for _ in range(100):
        if path.exists():
            try:
                rep = json.loads(path.read_text())
            except ValueError:  # being replaced
                rep = None
            if rep is not None and rep.get("state") == state:
                return rep
        time.sleep(0.1)
    return json.loads(path.read_text()) if path.exists() else None


def summarize_report(report: dict, events_seconds: float) -> dict:
    """Per step of a job's report: state, seconds, bytes on the wire (all parties) and messages, and its result."""
    steps = []
    parties = report.get("parties", {})
    for s in report.get("steps", []):
        per_party = {p: d["steps"].get(s["step"], {}) for p, d in parties.items()}
        wire = sum(int(v.get("bytes_sent", 0) or 0) for v in per_party.values())
        msgs = sum(int(v.get("messages_sent", 0) or 0) for v in per_party.values())
        secs = max([float(v.get("seconds", 0) or 0) for v in per_party.values()] + [s["seconds"] or 0])
        steps.append({
            "step": s["step"], "kind": s["kind"], "state": s["state"], "seconds": round(secs, 3),
            "bytes_on_wire": wire, "messages": msgs,
            "bytes_sent": {p: int(v.get("bytes_sent", 0) or 0) for p, v in per_party.items()},
            "result": s["result"],
        })
    return {"job_id": report.get("job_id"), "state": report.get("state"), "reason": report.get("reason"),
            "seconds": round(events_seconds, 3), "steps": steps}
