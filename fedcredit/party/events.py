"""Job events on a party: emitted to local watchers, forwarded to the initiator, state changes.

Every change of a job (state, step, progress, a party's decision) is an
event appended to the job's list (``WatchJob`` streams it to the CLI). A
party other than the initiator forwards its own events to the initiator
through one reporter thread (progress is shed under load; final states are
retried). Events reported by a peer are checked (:func:`check_event`) before
the initiator keeps them: known kind and state, a step of this job, bounded
text.
"""

from __future__ import annotations

import logging
import queue
import time

from ..errors import FedcreditError, ProtocolError
from .approvals import PENDING_APPROVAL
from .job import PartyJob
from .store import TERMINAL

__all__ = ["EventsMixin", "check_event"]

log = logging.getLogger("fedcredit.party")

_EVENT_KINDS = frozenset({"state", "step", "progress"})
_EVENT_STATES = frozenset({"", "proposed", "pending", PENDING_APPROVAL, "running"}) | TERMINAL
_MESSAGE_MAX = 2000


class EventsMixin:
    """Event emission and forwarding of :class:`~fedcredit.party.Party` (needs ``_lock``, ``store``, ``audit``,
    ``_reports``, ``_stop``, ``_client``)."""

    def _emit(self, job: PartyJob, kind: str, *, party: str | None = None, state: str = "", step: str = "",
              message: str = "", fraction: float | None = None, detail: dict | None = None) -> dict:
        e = {"job_id": job.job_id, "party": party or self.name, "kind": kind, "state": state, "step": step,
             "message": message, "fraction": fraction, "detail": detail or {}, "time": time.time()}
        with job.cond:
            job.events.append(e)
            job.cond.notify_all()
        return e

    def _forward(self, job: PartyJob, event: dict, *, important: bool = False) -> None:
        """Send an event of ours to the initiator (not from the initiator itself)."""
        if job.initiator != self.name:
            # the attempt lets the initiator drop a late report of an attempt that was resumed since
            event = {**event, "detail": {**(event.get("detail") or {}), "attempt": job.attempt}}
            self._reports.put((job.initiator, event, important))

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            try:
                peer, event, important = self._reports.get(timeout=0.2)
            except queue.Empty:
                continue
            if not important and self._reports.qsize() > 50:
                continue  # shed progress under load; final states are kept
            for attempt in range(3 if important else 1):
                try:
                    self._client(peer, timeout=min(5.0, self.config.transport.deadline)).report(event)
                    break
                except FedcreditError as exc:
                    log.info("could not report %s of job %s to %s: %s", event["kind"], event["job_id"], peer, exc)
                    if self._stop.wait(0.5):
                        return
                except Exception:  # noqa: BLE001 - never let the reporter die
                    log.exception("reporter error")
                    break

    def _set_state(self, job: PartyJob, state: str, reason: str = "") -> bool:
        """Move ``job`` to ``state``; False if it already ended."""
        with job.cond:  # state and its event change together, so a watcher never sees one without the other
            with self._lock:
                if job.done:
                    return False
                job.state, job.reason = state, reason
            self.store.set_state(job.job_id, state, reason)
            log.info("job %s: %s%s", job.job_id, state, f" ({reason})" if reason else "")
            if state in TERMINAL:
                self.audit.append("job.finished", job_id=job.job_id, state=state, reason=reason)
            self._emit(job, "state", state=state, message=reason)
        return True


def check_event(job: PartyJob, event: dict, caller: str) -> None:
    """ProtocolError unless a reported event is well-formed for ``job`` (kind, state, step; bounded message)."""
    if event.get("kind") not in _EVENT_KINDS:
        raise ProtocolError(f"{caller!r} reported an event of unknown kind {str(event.get('kind'))[:40]!r}")
    if event.get("state") not in _EVENT_STATES:
        raise ProtocolError(f"{caller!r} reported an unknown state {str(event.get('state'))[:40]!r}")
    step = event.get("step", "")
    if step and step not in {s.name for s in job.spec.steps}:
        raise ProtocolError(f"{caller!r} reported step {str(step)[:70]!r}, which job {job.job_id!r} does not have")
    if event.get("kind") == "step" and not step:
        raise ProtocolError(f"{caller!r} reported a step event without a step")
    event["message"] = str(event.get("message", ""))[:_MESSAGE_MAX]
    detail = event.get("detail") or {}
    sec = detail.get("seconds")
    if sec is not None and (isinstance(sec, bool) or not isinstance(sec, (int, float)) or not 0 <= sec < 1e9):
        detail["seconds"] = None
    if not isinstance(detail.get("kind", ""), str):
        detail["kind"] = ""
    event["detail"] = detail
