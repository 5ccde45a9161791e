"""A party's job worker: one thread per job runs this party's side of every step (party/runner.py).

Before the steps: the data is loaded (only this party's allowed columns),
category names are kept for scoring, and without a PSI step the parties
prove their rows are aligned. Around each step the worker records the step in
the store and the audit log (seconds, result digest, bytes and a digest of
what was sent per peer) and emits events. A failing step fails the job on
every party with its reason: the failing party aborts its channel (peers'
pending receives end naming it) and reports to the initiator; what crosses
to the other parties names party, step and error class, never a raw value
or a path (:func:`crossing_text`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..artifacts import FileArtifacts
from ..config import JobSpec
from ..errors import FedcreditError, JobCancelled, PeerError, ProtocolError
from ..ids import private_dir, state_path
from ..transport.base import Channel
from . import logfmt
from . import resume as _resume
from .alignment import unaligned_steps, verify_aligned
from .checks import public_text
from .job import PartyJob, short
from .policy import DATA_ROLES, effective_columns
from .report import write_report
from .runner import StepHooks, run_steps, traffic

__all__ = ["WorkerMixin", "CATEGORIES_FILE", "crossing_text", "blame"]

log = logging.getLogger("fedcredit.party")

_PUBLIC_RESULT_MAX = 16_384


class WorkerMixin:
    """Job launch, the worker thread and its end of :class:`~fedcredit.party.Party`."""

    def _launch(self, job: PartyJob) -> None:
        with self._lock:
            if job.thread is not None or job.done:
                return
            job.state = "running"
            job.thread = threading.Thread(target=self._work, args=(job,), name=f"{self.name}-job-{job.job_id}", daemon=True)
        self.store.set_state(job.job_id, "running")
        self.audit.append("job.started", job_id=job.job_id, role=job.role, attempt=job.attempt)
        ev = self._emit(job, "state", state="running", message=f"{self.name} runs as {job.role}")
        self._forward(job, ev)
        job.thread.start()

    def _final_event(self, job: PartyJob, state: str | None = None, reason: str | None = None) -> dict:
        seq, h = self.audit.head()
        return {"job_id": job.job_id, "party": self.name, "kind": "state", "state": state or job.state,
                "step": "", "message": reason if reason is not None else job.reason, "fraction": None,
                "detail": {"audit_head": f"{seq}:{h}"}, "time": time.time()}

    def _work(self, job: PartyJob) -> None:
        spec = job.spec
        current = {"step": ""}  # the step that is running (for the failure report)
        digests: dict[tuple[str, str], Any] = {}
        try:
            # each attempt of a resumed job has a channel of its own (party/resume.py)
            ch = self.transport.channel(_resume.channel_id(job.job_id, job.attempt),
                                        default_timeout=self.config.transport.recv_timeout)
            job.channel = ch

            def tap(sender: str, receiver: str, tag: str, payload: bytes) -> None:
                key = (tag.split("/", 1)[0], receiver)
                h = digests.setdefault(key, hashlib.sha256(job.job_id.encode() + b"\0"))  # bound to this job
                h.update(tag.encode() + b"\0" + hashlib.sha256(payload).digest())

            ch.tap(tap)
            if job.cancel.is_set():
                raise JobCancelled(job.cancel_reason)
            _resume.before_job(self, job)
            data = self._load_data(job)
            if data is not None and data.categories:  # the category lists scoring maps codes back to
                _save_categories(state_path(self.state_dir, "jobs", job.job_id), data.categories)
            if data is not None and unaligned_steps(spec) and job.role in ("guest", "host"):
                # no PSI before a step that combines rows: the parties prove their rows are aligned (alignment.py)
                me = spec.parties[self.name]
                verify_aligned(ch.sub("_align"), spec, self.name, data, self.config.tables[me.table].aligned_by or "")
            run_steps(spec, job_id=job.job_id, party=self.name, data=data, channel=ch,
                      hooks=_PartyHooks(self, job, ch, digests), policy=self.config.policy,
                      table_config=self.config.tables.get(spec.parties[self.name].table or ""),  # e.g. its monotone
                      on_step=lambda name: current.update(step=name))
            _resume.finish(self, job)
            self._finish_local(job, "succeeded", "")
        except BaseException as exc:  # noqa: BLE001 - a step failure never takes the party down
            step_name = current["step"]
            if job.cancel.is_set():
                state, reason = job.cancel_state, job.cancel_reason
            elif isinstance(exc, JobCancelled):
                state, reason = "cancelled", str(exc) or "job cancelled"
            else:
                where = f"step {step_name!r} failed on {self.name}" if step_name else f"job failed on {self.name}"
                reason = f"{where}: {short(exc)}"
                # what crosses to the other parties (and is stored): no raw value, no path (issue #14 item 7);
                # the full text stays in this party's log
                public = f"{where}: {crossing_text(exc, self.name, self._known_paths())}"
                if isinstance(exc, PeerError) and exc.peer and exc.peer not in reason:
                    reason += f" (peer {exc.peer!r})"
                    public += f" (peer {exc.peer!r})"
                elif not isinstance(exc, PeerError):
                    b = blame(job, exc, reason)
                    reason += b
                    public += b
                state = "failed"
                log.error("job %s: %s", job.job_id, reason, exc_info=exc)
                reason = public
            if step_name:
                self.store.set_step(job.job_id, self.name, step_name, _kind_of(spec, step_name), state,
                                    result={"error": reason})
                self._emit(job, "step", state=state, step=step_name, message=reason)
            if not job.cancel.is_set() and job.channel is not None:
                try:
                    job.channel.abort(reason)
                except Exception:  # noqa: BLE001
                    log.exception("abort failed")
            self._finish_local(job, state, reason)
        finally:
            if job.initiator != self.name:
                self._write_report(job)
            ch = job.channel
            if ch is not None:
                threading.Timer(5.0, _close_quietly, args=(ch,)).start()

    def _finish_local(self, job: PartyJob, state: str, reason: str) -> None:
        if job.initiator == self.name:
            if state == "succeeded":
                self._party_finished(job, self.name, "succeeded", "")
            else:
                self._fail_everywhere(job, reason, state=state)
        else:
            self._set_state(job, state, reason)
            self._forward(job, self._final_event(job, state, reason), important=True)

    def _known_paths(self) -> list[str]:
        """This party's file paths that must never appear in a text sent to a peer."""
        paths = [str(t.path) for t in self.config.tables.values()] + [str(self.state_dir)]
        paths += [str(getattr(self.config, "path", "") or "")]
        return [p for p in paths if p]

    def _load_data(self, job: PartyJob):
        me = job.spec.parties[self.name]
        if job.role not in DATA_ROLES and me.table is None:
            return None  # an arbiter or aggregator without a table; with one (e.g. held-out data) it is loaded
        from ..data import load_table

        t = self.config.tables[me.table]
        return load_table(t.path, party=self.name, id_column=t.id_column, label_column=t.label_column,
                          columns=effective_columns(self.config, job.spec, job.proposer),
                          categorical=t.categorical, pos_label=t.pos_label)

    def _write_report(self, job: PartyJob) -> None:
        try:
            me = job.spec.parties.get(self.name)
            columns = (list(effective_columns(self.config, job.spec, job.proposer) or [])
                       if me is not None and me.table else None)
            write_report(job, party=self.name, row=self.store.job(job.job_id) or {}, summary=self.config.summary(),
                         columns=columns, directory=state_path(self.state_dir, "jobs", job.job_id))
        except Exception:  # noqa: BLE001 - a report failure must not fail the party
            log.exception("writing report.json of job %s failed", job.job_id)


class _PartyHooks(StepHooks):
    """What the party does around each step: store rows, audit records, events, traffic, resume checks."""

    def __init__(self, party, job: PartyJob, channel, digests: dict):
        self.party, self.job, self.ch, self.digests = party, job, channel, digests
        self._before: tuple[dict, dict] = ({}, {})

    def check_cancelled(self) -> None:
        if self.job.cancel.is_set():
            raise JobCancelled(self.job.cancel_reason or "job cancelled")

    def before(self, index: int, step) -> None:
        party, job = self.party, self.job
        logfmt.set_step(step.name)
        self._before = (dict(self.ch.stats.bytes), dict(self.ch.stats.messages))
        party.store.set_step(job.job_id, party.name, step.name, step.kind, "running", started=time.time())
        ev = party._emit(job, "step", state="running", step=step.name,
                         message=f"{step.name} ({step.kind}) started", detail={"index": index, "kind": step.kind})
        party._forward(job, ev)

    def artifacts(self, step) -> FileArtifacts:
        # checked names only, never outside state_dir; owner-only (0700)
        return FileArtifacts(private_dir(state_path(self.party.state_dir, "jobs", self.job.job_id, step.name)))

    def checkpoint(self, step, channel, artifacts):
        return _resume.step_checkpoint(self.job, step, channel, self.party.name, artifacts)

    def progress(self, step, message: str, fraction: float | None) -> None:
        e = self.party._emit(self.job, "progress", step=step.name, message=message, fraction=fraction)
        self.party._forward(self.job, e)

    def after(self, index: int, step, result: dict, seconds: float, table) -> None:
        party, job = self.party, self.job
        _resume.after_step(party, job, step.name, table)  # same aligned rows on a resume
        tr = traffic(self._before, self.ch.stats)
        for peer, row in tr["peers"].items():
            h = self.digests.get((step.name, peer))
            row["sent_digest"] = h.hexdigest() if h else ""
        party.store.set_step(job.job_id, party.name, step.name, step.kind, "succeeded", seconds=seconds,
                             result={"result": result, "traffic": tr})
        party.audit.append("step.finished", job_id=job.job_id, step=step.name, kind=step.kind,
                           seconds=round(seconds, 6),
                           result_sha256=hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest())
        party.audit.append("step.messages", job_id=job.job_id, step=step.name, peers=tr["peers"])
        public = result.get("public", result if party.name == job.initiator else {})
        text = json.dumps(public, default=str)
        if len(text) > _PUBLIC_RESULT_MAX:
            public = {"note": f"public result of {len(text)} bytes not forwarded"}
        ev = party._emit(job, "step", state="succeeded", step=step.name, message=f"{step.name} done in {seconds:.2f}s",
                         detail={"kind": step.kind, "seconds": seconds, "public": public,
                                 "bytes_sent": tr["bytes_sent"], "messages_sent": tr["messages_sent"]})
        if party.name == job.initiator:
            job.party_steps[party.name][step.name] = ev["detail"]
        party._forward(job, ev, important=True)


def blame(job: PartyJob, exc: BaseException, reason: str) -> str:
    """`` (… peer 'X')`` for a step that failed on what a peer sent, unless ``reason`` already names a peer.

    A ProtocolError is by definition a peer's message violating the protocol;
    an unexpected builtin error (ValueError, KeyError, IndexError…) inside a
    step is most often a malformed payload too. Either way the reason names
    the peer whose message the step received last (:meth:`Channel.last_sender`),
    so a job failed by a peer's garbage always says which peer.
    """
    if isinstance(exc, FedcreditError) and not isinstance(exc, ProtocolError):
        return ""  # this party's own data, config or compute
    ch = job.channel
    peer = ch.last_sender() if ch is not None else None
    if peer is None or any(repr(p) in reason for p in job.spec.parties if p != ch.party):
        return ""
    if isinstance(exc, ProtocolError):
        return f" (malformed message from peer {peer!r})"
    return f" (last message received from peer {peer!r})"


_PATH_RE = re.compile(r"""(?:[A-Za-z]:)?(?:[/\\][^\s'",;:()<>]+){2,}""")


def crossing_text(exc: BaseException, party: str, paths: list[str]) -> str:
    """``exc`` as another party may read it: no raw cell value and no path of this party.

    A :class:`~fedcredit.data.TableError` gives its ``public`` text (column,
    problem, class); another fedcredit error its message with this party's
    paths (and anything path-like) replaced by ``<path>``; a builtin error
    (whose text may quote a value) only its class.
    """
    if getattr(exc, "public", None) is not None:
        return public_text(exc)
    if not isinstance(exc, FedcreditError):
        return f"{type(exc).__name__} (details in {party}'s log)"
    text = short(exc)
    for p in sorted(paths, key=len, reverse=True):
        text = text.replace(p, "<path>")
    return _PATH_RE.sub("<path>", text)


#: Per job: this party's categorical columns and their category names at training time.
CATEGORIES_FILE = "categories.json"


def _save_categories(job_dir: Path, categories: dict) -> None:
    """The category names are this party's data: owner-only (0600), like its model parts."""
    from .._io import write_json_atomic

    private_dir(job_dir)
    write_json_atomic(job_dir / CATEGORIES_FILE, {c: list(v) for c, v in categories.items()})


def _close_quietly(ch: Channel) -> None:
    try:
        ch.close()
    except Exception:  # noqa: BLE001
        pass


def _kind_of(spec: JobSpec, step: str) -> str:
    return next((s.kind for s in spec.steps if s.name == step), "")
