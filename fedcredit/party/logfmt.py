"""``[party] log_format = "json"``: one JSON object per line, for log shippers.

Each line holds ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``thread``,
``message``, and, when known, ``job``, ``step`` and ``peer``:

* ``job``: a ``job_id`` passed in ``extra``, else the job whose worker or
  initiator thread logs (threads are named ``<party>-job-<id>`` /
  ``<party>-init-<id>``);
* ``step``: the step the logging worker thread runs (:func:`set_step`);
* ``peer``: a ``peer`` passed in ``extra``, else the first configured peer the
  message names.

``json.dumps`` escapes every control character, so a peer's string cannot
start a forged line (the text format relies on
:class:`fedcredit.ids.SafeFormatter` for that). Exceptions go into ``exc``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import threading

__all__ = ["JsonFormatter", "set_step"]

_local = threading.local()
_THREAD_JOB = re.compile(r"-(?:job|init)-([A-Za-z0-9][A-Za-z0-9_.-]*)$")


def set_step(step: str | None) -> None:
    """Name the step the current (worker) thread runs, for the ``step`` field."""
    _local.step = step


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (see the module docstring)."""

    def __init__(self, party: str, peers=()):
        super().__init__()
        self.party = party
        self.peers = tuple(peers)

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "thread": record.threadName, "party": self.party,
            "message": msg,
        }
        m = _THREAD_JOB.search(record.threadName or "")
        job = getattr(record, "job_id", None) or (m.group(1) if m else None)
        if job:
            out["job"] = str(job)
        step = getattr(record, "step", None) or (getattr(_local, "step", None) if m else None)
        if step:
            out["step"] = str(step)
        peer = getattr(record, "peer", None) or next(
            (p for p in self.peers if re.search(rf"(?<![A-Za-z0-9_-]){re.escape(p)}(?![A-Za-z0-9_-])", msg)), None)
        if peer:
            out["peer"] = str(peer)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=True, default=str)
