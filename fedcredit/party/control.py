"""The Control service of a party: submit, propose, start, report, cancel, watch, list (``control.proto``).

Lifecycle of a job::

    CLI --SubmitJob--> initiator: parse, own policy check, job id
    initiator --ProposeJob--> every other party: policy check -> accept / refuse(reason)
    any refusal or unreachable party: the job ends everywhere with that reason
    initiator --StartJob--> every party; each runs its role in a worker thread (party/worker.py)
    parties --ReportStatus--> initiator (progress, step results, final state)
    initiator --WatchJob stream--> CLI

Every handler checks who calls (its own operator, a peer, the initiator of
the job) before anything else, and bounds what it stores or logs of a peer's
text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time

from .. import __version__
from ..audit import _jsonable, canonical_json
from ..config import JobSpec, job_from_dict
from ..errors import ConfigError, FedcreditError, PolicyError, ProtocolError
from ..ids import check_name
from ..jsonlimits import loads_limited
from ..transport.control import NotFound
from . import resume as _resume
from .approvals import PENDING_APPROVAL
from .checks import check_party_data, check_steps, public_text, step_notes
from .events import check_event
from .job import PartyJob, short
from .limits import JOB_JSON_MAX
from .metrics import cert_expiries
from .policy import check_job, effective_columns
from .store import TERMINAL

__all__ = ["ControlMixin"]

log = logging.getLogger("fedcredit.party")

#: Generated job ids are ``<name>-<YYYYmmdd>-<HHMMSS>-<6 hex>`` (23 characters after the name), within 63.
_NAME_IN_JOB_ID = 40
_HEAD_RE = re.compile(r"[0-9]{1,19}:[0-9a-f]{64}")


class ControlMixin:
    """The Control service handlers of :class:`~fedcredit.party.Party` (``add_servicers`` calls these)."""

    # -- local CLI: submit --------------------------------------------------------
    def submit_job(self, caller: str, job_json: str, source: str) -> str:
        self._require_self(caller, "submit jobs")
        if not self._serving:
            raise FedcreditError(f"party {self.name!r} is shutting down")
        data = loads_limited(job_json, what=source or "job", max_bytes=JOB_JSON_MAX, error=ConfigError)
        spec = job_from_dict(data, source=source or "submitted job")
        problems = check_steps(spec)  # every step's parameters and the step order, before anything is sent
        if problems:
            raise ConfigError(f"{spec.source}: " + "; ".join(problems), [f"{spec.source}: {p}" for p in problems])
        if self.name not in spec.parties:
            raise ConfigError(f"{spec.source}: [parties]: this party ({self.name!r}) is not one of the job's parties; "
                              f"submit the job to a party that takes part")
        strangers = [p for p in spec.parties if p != self.name and p not in self.config.peers]
        if strangers:
            raise ConfigError(f"{spec.source}: [parties]: {', '.join(map(repr, strangers))} not in {self.name!r}'s "
                              f"[peers] ({self.config.path})")
        # <name>-<YYYYmmdd>-<HHMMSS>-<6 hex>: the name is cut so the id stays within the identifier grammar
        job_id = f"{spec.name[:_NAME_IN_JOB_ID]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        check_name(job_id, "job id", error=ConfigError)
        job = PartyJob(job_id, spec, initiator=self.name, role=spec.parties[self.name].role, proposer=self.name)
        canonical = spec.to_json()
        self._create_job(job, canonical, audit=[("job.proposed", dict(
            job_id=job_id, name=spec.name, initiator=self.name, parties=spec.roles,
            steps=[[s.name, s.kind] for s in spec.steps], purpose=spec.purpose,
            job_sha256=hashlib.sha256(canonical.encode()).hexdigest()))])
        self._emit(job, "state", state="proposed", message=f"job {job_id} submitted by {self.name}")
        for note in step_notes(spec):
            self._emit(job, "state", state="proposed", message=f"note: {note}")
        t = threading.Thread(target=self._initiate, args=(job,), name=f"{self.name}-init-{job_id}", daemon=True)
        t.start()
        return job_id

    def _initiate(self, job: PartyJob) -> None:
        try:
            self._initiate_inner(job)
        except Exception as exc:  # noqa: BLE001
            log.exception("initiating job %s failed", job.job_id)
            self._fail_everywhere(job, f"could not start the job: {short(exc)}")

    def _initiate_inner(self, job: PartyJob) -> None:
        spec = job.spec
        reason = check_job(self.config, spec, self.name, running_jobs=self._running() - 1)
        self._decide(job, self.name, reason is None, reason or "")
        if reason:
            self._set_state(job, "refused", f"refused by {self.name}: {reason}")
            return
        # this party's own data problems: reported together with every other party's, before any step
        own_problems = self._data_problems(spec, self.name)
        others = [p for p in spec.parties if p != self.name]
        head = "%d:%s" % self.audit.head()
        results: dict[str, tuple[bool, str]] = {}
        unreachable: dict[str, str] = {}

        def ask(peer: str) -> None:
            try:
                results[peer] = self._client(peer).propose_decision(job.job_id, spec.to_json(), head,
                                                                    attempt=job.attempt)
            except PolicyError as exc:
                results[peer] = (False, str(exc))
            except Exception as exc:  # noqa: BLE001 - unreachable, timed out, or broken
                results[peer] = (False, f"no answer: {short(exc)}")
                unreachable[peer] = short(exc)

        threads = [threading.Thread(target=ask, args=(p,), daemon=True) for p in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refusals = []
        if own_problems:
            why = "; ".join(full for full, _ in own_problems)
            self._decide(job, self.name, False, "; ".join(pub for _, pub in own_problems))
            refusals.append(f"refused by {self.name}: {why}")
        awaiting: dict[str, float] = {}
        for p in others:
            ok, why, *rest = results.get(p, (False, "no answer"))
            if ok and rest and rest[0] > 0:
                awaiting[p] = rest[0]  # accepted by policy, waiting for its operator (party/approvals.py)
                continue
            self._decide(job, p, ok, why)
            if not ok:
                refusals.append(f"refused by {p}: {why}")
        if refusals:
            reason = "; ".join(refusals)
            if unreachable:
                reason = "; ".join(f"could not propose the job to {p}: {e}" for p, e in unreachable.items())
            # a refused resume leaves the job failed (resumable again later), not refused
            self._set_state(job, "failed" if unreachable or job.attempt else "refused", reason)
            public = reason if not own_problems else "; ".join(
                [f"refused by {self.name}: " + "; ".join(pub for _, pub in own_problems)] + refusals[1:])
            self._cancel_peers(job, public, [p for p in others if results.get(p, (False,))[0]])
            return
        if awaiting and self._await_approvals(job, awaiting, others):
            return
        if job.cancel.is_set():
            self._fail_everywhere(job, job.cancel_reason, state="cancelled")
            return
        errors = {}

        def start(peer: str) -> None:
            try:
                self._client(peer).start(job.job_id, attempt=job.attempt)
            except Exception as exc:  # noqa: BLE001
                errors[peer] = short(exc)

        threads = [threading.Thread(target=start, args=(p,), daemon=True) for p in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self._fail_everywhere(job, "; ".join(f"could not start the job on {p}: {e}" for p, e in errors.items()))
            return
        self._launch(job)

    def _data_problems(self, spec: JobSpec, proposer: str) -> list[tuple[str, str]]:
        """This party's own data problems with ``spec`` as ``(full, public)`` pairs; the full texts are logged here."""
        try:
            problems = check_party_data(self.config, spec, effective_columns(self.config, spec, proposer))
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a refusal, never a crash
            log.exception("checking the data of a proposed job failed")
            problems = [(f"checking this party's data failed: {short(exc)}", public_text(exc))]
        for full, _ in problems:
            log.warning("job refused on this party's data: %s", full)
        return problems

    def _await_approvals(self, job: PartyJob, awaiting: dict[str, float], others: list[str]) -> bool:
        """Wait for the operators' approvals; True when the job ended (rejected or expired) everywhere."""
        reason = self.approvals.await_peers(job, awaiting)
        if reason is None:
            return False
        self._set_state(job, "refused", reason)
        self._cancel_peers(job, reason, [p for p in others if job.approvals.get(p, (True,))[0]])
        return True

    def _decide(self, job: PartyJob, party: str, accepted: bool, reason: str) -> None:
        self.store.add_decision(job.job_id, party, accepted, reason)
        self.audit.append("job.decision", job_id=job.job_id, party=party, accepted=accepted, reason=reason)
        self._emit(job, "decision", party=party, state="accepted" if accepted else "refused", message=reason)

    # -- peers: propose / start -------------------------------------------------
    def propose_job(self, caller: str, job_id: str, job_json: str, initiator_head: str,
                    attempt: int = 0) -> tuple[bool, str]:
        self._require_peer(caller)
        # bounded and rate-limited per peer before anything is parsed, stored or logged: a peer flooding
        # proposals gets RESOURCE_EXHAUSTED and costs this party no disk (docs/transport.md, "Limits per RPC")
        self._proposals.take(caller)
        if not self._serving:
            return False, f"{self.name!r} is shutting down"
        check_name(job_id, "job id")  # ProtocolError -> INVALID_ARGUMENT, nothing stored or logged raw
        if initiator_head and not _HEAD_RE.fullmatch(initiator_head):
            raise ProtocolError(f"malformed audit head from {caller!r}: expected '<seq>:<64 hex>'")
        if attempt:  # a resume of a job this party ran (party/resume.py)
            if len(job_json.encode("utf-8", "surrogatepass")) > self.config.transport.max_proposal_kib * 1024:
                raise ProtocolError(f"resumed job proposal exceeds {self.name!r}'s limit")
            return _resume.accept_resume(self, caller, job_id, job_json, initiator_head, attempt)
        if self.store.has_job(job_id):
            return False, f"job id {job_id!r} is already used on {self.name!r}"
        body = job_json.encode("utf-8", "surrogatepass")
        size, digest = len(body), hashlib.sha256(body).hexdigest()
        limit = self.config.transport.max_proposal_kib * 1024
        if size > limit:
            reason = f"job proposal of {size} bytes exceeds {self.name!r}'s limit of {limit} bytes"
            self.audit.append("job.proposal", job_id=job_id, proposer=caller, valid=False, bytes=size, sha256=digest)
            self.audit.append("job.decision", job_id=job_id, party=self.name, accepted=False, reason=reason)
            raise ProtocolError(reason)  # not a job this party reads at all: INVALID_ARGUMENT, like other limits
        try:
            data = loads_limited(job_json, what=f"job proposed by {caller!r}", max_bytes=JOB_JSON_MAX)
        except ProtocolError as exc:  # not a job at all (size, depth, numbers, UTF-8): INVALID_ARGUMENT
            self.audit.append("job.proposal", job_id=job_id, proposer=caller, valid=False, bytes=size, sha256=digest)
            self.audit.append("job.decision", job_id=job_id, party=self.name, accepted=False,
                              reason=f"malformed job: {exc}"[:2000])
            raise
        try:
            spec = job_from_dict(data, source=f"job proposed by {caller}")
        except ConfigError as exc:  # a job this party cannot take (unknown step kind, bad names): a refusal
            reason = f"malformed job: {exc}"
            self.audit.append("job.proposal", job_id=job_id, proposer=caller, valid=False, bytes=size, sha256=digest)
            self.audit.append("job.decision", job_id=job_id, party=self.name, accepted=False, reason=reason[:2000])
            return False, reason
        role = spec.parties[self.name].role if self.name in spec.parties else "none"
        canonical = spec.to_json()
        reason = check_job(self.config, spec, caller, running_jobs=self._running())
        if reason is None:  # the job's steps, then this party's own data: every problem at once, no raw value
            problems = [(p, p) for p in check_steps(spec)] + self._data_problems(spec, caller)
            if problems:
                reason = "; ".join(pub for _, pub in problems)
        if reason is not None:
            reason = reason if len(reason) <= 2000 else reason[:2000] + "..."  # it may quote the proposer's text
            # a refused proposal is kept as evidence, not as content: its digest, size and the reason
            # (the proposer chose every byte of the body; storing it would let it spend our disk); and not in memory
            job = PartyJob(job_id, spec, initiator=caller, role=role, proposer=caller, state="refused", reason=reason)
            self._create_job(job, json.dumps({"refused": True, "bytes": size, "sha256": digest}),
                             decision=(False, reason), in_memory=False, audit=[
                                 ("job.proposal", dict(job_id=job_id, proposer=caller, valid=True, bytes=size,
                                                       sha256=digest, proposer_head=initiator_head[:200])),
                                 ("job.decision", dict(job_id=job_id, party=self.name, accepted=False, reason=reason,
                                                       columns=[]))])
            log.info("job %s proposed by %s: refused (%s)", job_id, caller, reason)
            return False, reason
        manual = self.approvals.needs_approval(spec, caller)
        job = PartyJob(job_id, spec, initiator=caller, role=role, proposer=caller,
                       state=PENDING_APPROVAL if manual else "pending")
        job.approval_expires = self.approvals.expiry() if manual else 0.0
        self._create_job(job, canonical, decision=(True, ""), audit=[
            ("job.proposal", dict(job_id=job_id, proposer=caller, name=spec.name, parties=spec.roles,
                                  steps=[[s.name, s.kind] for s in spec.steps], purpose=spec.purpose,
                                  job_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
                                  proposer_head=initiator_head[:200])),
            ("job.decision", dict(job_id=job_id, party=self.name, accepted=True, reason="",
                                  columns=list(effective_columns(self.config, spec, caller) or []))),
            *([("job.approval_requested", dict(job_id=job_id, proposer=caller, expires=job.approval_expires))]
              if manual else [])])
        if manual:
            log.info("job %s proposed by %s: accepted by policy, waiting for the operator's approval", job_id, caller)
            return True, "", job.approval_expires
        log.info("job %s proposed by %s: accepted", job_id, caller)
        return True, ""

    def _create_job(self, job: PartyJob, canonical: str, *, decision: tuple[bool, str] | None = None,
                    audit: list[tuple[str, dict]] = (), in_memory: bool = True) -> None:
        """Store row(s), audit records and the in-memory job together, or none of them.

        The audit records are checked to be encodable before anything is
        written (a lone surrogate used to fail the append after the store row
        was written, leaving a ``proposed`` job that counted against
        ``max_concurrent_jobs`` forever); an append that still fails (disk)
        removes the store rows again.
        """
        for _, fields in audit:
            canonical_json(_jsonable(fields)).encode("utf-8")
        canonical.encode("utf-8")
        self.store.add_job(job.job_id, job.spec.name, job.initiator, job.role, job.state, canonical, job.reason)
        try:
            if decision is not None:
                self.store.add_decision(job.job_id, self.name, *decision)
            for kind, fields in audit:
                self.audit.append(kind, **fields)
        except BaseException:
            self.store.remove_job(job.job_id)
            raise
        if in_memory:
            with self._lock:
                self._jobs[job.job_id] = job

    def start_job(self, caller: str, job_id: str, attempt: int = 0) -> None:
        check_name(job_id, "job id")
        job = self._job(job_id)
        if caller != job.initiator:
            raise PolicyError(f"only the initiator {job.initiator!r} may start job {job_id!r}")
        if attempt != job.attempt:
            raise FedcreditError(f"job {job_id!r} is at attempt {job.attempt} on {self.name!r}, not {attempt}")
        if job.state != "pending":
            raise FedcreditError(f"job {job_id!r} is {job.state}, not pending")
        self._launch(job)

    def resume_job(self, caller: str, job_id: str) -> str:
        """ResumeJob: run a failed or cancelled job of ours again on every party (party/resume.py)."""
        return _resume.resume_as_initiator(self, caller, job_id)

    # -- reports from peers (initiator side) -------------------------------------
    def report_status(self, caller: str, event: dict) -> None:
        job = self._job(check_name(event.get("job_id", ""), "job id"))
        if job.initiator != self.name:
            raise PolicyError(f"{self.name!r} did not initiate job {job.job_id!r}")
        if caller not in job.spec.parties or caller == self.name:
            raise PolicyError(f"{caller!r} is not a participant of job {job.job_id!r}")
        event["party"] = caller  # identity from the certificate, never from the message
        if event.get("kind") == "decision":  # an operator's approval or rejection (party/approvals.py)
            self.approvals.reported(job, caller, event)
            return
        check_event(job, event, caller)
        if event["detail"].get("attempt", 0) != job.attempt:  # a late report of an attempt since resumed
            log.info("job %s: dropped a report of another attempt from %s", job.job_id, caller)
            return
        kind = event.get("kind")
        if kind == "step" and event.get("state") in ("succeeded", "failed"):
            job.party_steps[caller][event.get("step", "")] = event.get("detail") or {}
            self.store.set_step(job.job_id, caller, event.get("step", ""), str(event["detail"].get("kind", "")),
                                event["state"], seconds=event["detail"].get("seconds"),
                                result=event["detail"])
        if kind == "state" and event.get("state") in TERMINAL:
            head = (event.get("detail") or {}).get("audit_head")
            if head:
                self.audit.append("peer.head", job_id=job.job_id, peer=caller, head=head)
        with job.cond:
            job.events.append(event)
            job.cond.notify_all()
        if kind == "state" and event.get("state") in TERMINAL:
            self._party_finished(job, caller, event["state"], event.get("message", ""))

    def _party_finished(self, job: PartyJob, party: str, state: str, reason: str) -> None:
        with self._lock:
            job.party_state[party] = state
        if state != "succeeded":
            why = reason or state
            self._fail_everywhere(job, why if party in why else f"{party}: {why}",
                                  state="cancelled" if state == "cancelled" else "failed")
            return
        with self._lock:
            all_done = all(job.party_state.get(p) == "succeeded" for p in job.spec.parties)
        if all_done:
            self._set_state(job, "succeeded")
            self._write_report(job)

    def _fail_everywhere(self, job: PartyJob, reason: str, state: str = "failed") -> None:
        """End ``job`` on this party and every other participant with ``reason``."""
        if not self._set_state(job, state, reason):
            return
        self._cancel_local(job, reason, state)
        if job.initiator == self.name:
            self._cancel_peers(job, reason, [p for p in job.spec.parties if p != self.name])
            threading.Thread(target=self._write_report_later, args=(job,), daemon=True).start()

    def _write_report_later(self, job: PartyJob) -> None:
        if job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout=30)
        self._write_report(job)

    def _cancel_peers(self, job: PartyJob, reason: str, peers: list[str]) -> None:
        def tell(p: str) -> None:
            try:
                self._client(p, timeout=min(5.0, self.config.transport.deadline)).cancel(job.job_id, reason,
                                                                                        attempt=job.attempt)
            except Exception as exc:  # noqa: BLE001 - best effort: the peer may be gone
                log.info("could not cancel job %s on %s: %s", job.job_id, p, exc)

        for p in peers:
            if job.party_state.get(p) in TERMINAL:
                continue
            threading.Thread(target=tell, args=(p,), daemon=True).start()

    def _cancel_local(self, job: PartyJob, reason: str, state: str = "cancelled") -> None:
        if job.cancel.is_set():
            return
        job.cancel_reason = reason
        job.cancel_state = state
        job.cancel.set()
        ch = job.channel
        if ch is not None:
            try:
                ch.abort(reason)  # our pending receives end, peers' receives from us end
            except Exception:  # noqa: BLE001
                log.exception("abort of job %s failed", job.job_id)

    # -- watch / cancel / list ---------------------------------------------------
    def watch_job(self, caller: str, job_id: str):
        self._require_self(caller, "watch jobs")
        check_name(job_id, "job id")
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            row = self.store.job(job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r} on {self.name!r}")
            yield {"job_id": job_id, "party": self.name, "kind": "state", "state": row["state"], "step": "",
                   "message": row["reason"], "fraction": None, "detail": {}, "time": row["updated"]}
            return
        i = 0
        while True:
            with job.cond:
                while i >= len(job.events) and not job.done and not self._stop.is_set():
                    job.cond.wait(0.5)
                batch = job.events[i:]
                i = len(job.events)
                finished = job.done
            yield from batch
            if finished and i >= len(job.events) or self._stop.is_set():
                return

    def cancel_job(self, caller: str, job_id: str, reason: str, attempt: int | None = None) -> str:
        job = self._job(check_name(job_id, "job id"))
        reason = str(reason)[:2000]
        if caller != self.name and caller != job.initiator:
            raise PolicyError(f"only {self.name!r}'s operator or the initiator may cancel job {job_id!r}")
        if caller != self.name and attempt is not None and attempt != job.attempt:
            # a late cancel of an attempt that was resumed since (e.g. held while this party was stopped)
            return f"job {job_id} attempt {attempt} is over (now at attempt {job.attempt})"
        if job.done:
            return f"job {job_id} already {job.state}"
        if caller == self.name:
            why = f"cancelled by {self.name}'s operator" + (f": {reason}" if reason else "")
            self.audit.append("job.cancel", job_id=job_id, by=self.name, reason=reason)
            if job.initiator == self.name:
                self._fail_everywhere(job, why, state="cancelled")
            else:
                self._cancel_local(job, why)
                if job.thread is None:  # pending, never started
                    self._set_state(job, "cancelled", why)
                    self._forward(job, self._final_event(job), important=True)
        else:
            self.audit.append("job.cancel", job_id=job_id, by=caller, reason=reason)
            reason = reason or f"cancelled by {caller}"
            state = "cancelled" if reason.startswith("cancelled") else "failed"
            self._cancel_local(job, reason, state)
            if job.thread is None or not job.thread.is_alive():
                self._set_state(job, state, reason)
        return f"job {job_id} cancelling"

    def list_jobs(self, caller: str, job_id: str, limit: int) -> list[dict]:
        self._require_self(caller, "list jobs")
        return self.store.jobs(job_id=job_id, limit=limit)

    def pending_jobs(self, caller: str) -> list[dict]:
        return self.approvals.pending(caller)

    def decide_job(self, caller: str, job_id: str, approve: bool, reason: str) -> str:
        return self.approvals.decide(caller, job_id, approve, reason)

    def health(self, caller: str) -> dict:
        exp = cert_expiries(self)
        return {"serving": self._serving, "party": self.name, "version": __version__, "running_jobs": self._running(),
                "cert_not_after": exp.get("party", 0.0), "ca_not_after": min((v for k, v in exp.items() if k != "party"),
                                                                              default=0.0)}
