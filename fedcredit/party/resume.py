"""Job-level resume: a failed or interrupted job continues on every party (issue #21).

``fedcredit run --resume JOB_ID`` (or ``fedcredit jobs resume JOB_ID``) asks the
job's initiator to run it again as *attempt* ``n`` (1, 2, ...)::

    CLI --ResumeJob--> initiator: the job is its own, failed or cancelled, not running;
                       its own checks (below) and its policy again
    initiator --ProposeJob(attempt=n)--> every other party: the same checks, then accept / refuse(reason)
    initiator --StartJob(attempt=n)--> every party runs the job's steps again

Every party checks that the resumed job is *the same job* before it accepts
(:func:`check_same_job`), from what it recorded itself when the job first ran
(``<state_dir>/jobs/<job_id>/resume.json``, :class:`Record`):

* the job spec: the proposed spec's canonical digest equals the one it accepted;
* its own data: the SHA-256 of its table file is unchanged;
* the aligned rows: after each step, the digest of the rows the next step sees
  (e.g. the PSI output, in its order) must equal the one recorded by the first
  attempt, or the step fails with a reason (:func:`after_step`);
* keys: every attempt makes fresh keys (Paillier, CKKS, secure-aggregation
  pairs), by design: no private key is ever written to disk, and no model
  depends on a key (masks cancel exactly; trees and weights are plaintext),
  so fresh keys change no result. The attempt's number is in the audit log.

Steps run again in order on a fresh channel per attempt
(:func:`channel_id`: messages of a dead attempt can never reach a live one).
Steps that train keep their progress: SecureBoost resumes from the last tree
every party finished (its estimator checkpoints each tree in the step's
workdir, which is the same for every attempt); steps that train in rounds
(hetero LR, homo) first agree on the latest round every party holds a
checkpoint of (:func:`fedcredit.protocols.checkpoint.agree`) and continue from
there (the clients of a homo job re-key). Cheap steps before them (PSI, binning, selection) are recomputed — they
are deterministic given the same data and spec, which the aligned-rows check
confirms — rather than restored from files, so nothing but plaintext model
state is ever persisted for a resume.

The audit log of every party records ``job.resumed`` (attempt, spec digest,
data digest, who asked) and the usual decision and step records of the new attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._io import write_json_atomic
from ..config import job_from_dict
from ..errors import ConfigError, DataError, FedcreditError, PolicyError
from ..ids import check_name, private_dir, state_path
from ..artifacts import FileArtifacts
from ..protocols.checkpoint import Checkpoint, agree
from .limits import JOB_JSON_MAX
from .policy import check_job

if TYPE_CHECKING:  # pragma: no cover
    from .party import Party, PartyJob

__all__ = ["channel_id", "Record", "check_same_job", "resume_as_initiator", "accept_resume", "before_job",
           "after_step", "step_checkpoint", "finish", "ROUND_KINDS", "RESUMABLE_STATES"]

log = logging.getLogger("fedcredit.party")

#: Step kinds that train in rounds and keep per-round checkpoints through ``ctx.checkpoint``.
ROUND_KINDS = frozenset({"hetero_lr", "homo"})
#: A job may be resumed from these states only (not while it runs, not after it succeeded or was refused).
RESUMABLE_STATES = frozenset({"failed", "cancelled"})
_RECORD = "resume.json"


def channel_id(job_id: str, attempt: int) -> str:
    """The transport channel of one attempt: the job id for the first, a derived name for later ones.

    Derived names stay within the identifier grammar (63 characters) and are
    distinct per job and attempt (a digest of the job id), so a message of a
    dead attempt that arrives late can never be taken by a live one.
    """
    if attempt == 0:
        return job_id
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:12]
    return f"{job_id[:40]}-r{int(attempt)}-{digest}"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rows_sha256(table) -> str:
    """Digest of the rows a step sees, in their order (ids; the table's size)."""
    h = hashlib.sha256(b"rows\0")
    ids = getattr(table, "ids", None)
    if ids is None:
        return ""
    h.update(str(len(ids)).encode() + b"\0")
    for i in np.asarray(ids).tolist():
        h.update(str(i).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


class Record:
    """What this party recorded about a job to check a resume against (``jobs/<job_id>/resume.json``).

    Attributes
    ----------
    attempt : int
        The latest attempt this party accepted (0: the original run).
    spec_sha256 : str
        Canonical digest of the job spec it accepted.
    data_sha256 : str
        SHA-256 of its table file when the job first ran ("" without a table).
    rows : dict of str to str
        Step name -> digest of the rows after that step (the aligned rows).
    """

    def __init__(self, path: Path, d: dict | None = None):
        d = d or {}
        self.path = path
        self.attempt = int(d.get("attempt", 0))
        self.spec_sha256 = str(d.get("spec_sha256", ""))
        self.data_sha256 = str(d.get("data_sha256", ""))
        self.rows = {str(k): str(v) for k, v in dict(d.get("rows", {})).items()}

    @classmethod
    def load(cls, party: "Party", job_id: str) -> "Record":
        path = state_path(party.state_dir, "jobs", check_name(job_id, "job id")) / _RECORD
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return cls(path)

    def save(self) -> None:
        private_dir(self.path.parent)
        write_json_atomic(self.path, {"attempt": self.attempt, "spec_sha256": self.spec_sha256,
                                      "data_sha256": self.data_sha256, "rows": self.rows}, sort_keys=True)


def _spec_sha256(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _data_sha256(party: "Party", spec) -> str:
    me = spec.parties.get(party.name)
    if me is None or me.table is None or me.table not in party.config.tables:
        return ""
    return file_sha256(party.config.tables[me.table].path)


def check_same_job(party: "Party", job_id: str, spec, row: dict | None, attempt: int, caller: str) -> str | None:
    """Why this party refuses attempt ``attempt`` of ``job_id`` with ``spec`` (None: it is the same job)."""
    if row is None:
        return f"{party.name!r} has no job {job_id!r} to resume"
    if row["initiator"] != caller:
        return f"only the job's initiator {row['initiator']!r} may resume job {job_id!r}"
    if row["state"] not in RESUMABLE_STATES:
        return f"job {job_id!r} is {row['state']} on {party.name!r}; only a failed or cancelled job is resumed"
    rec = Record.load(party, job_id)
    # a job that ended before it ran here (e.g. a party did not answer the proposal) has no record yet: it is
    # checked against the spec this party accepted (in its store), and nothing of it ran, so no data to compare
    accepted = rec.spec_sha256 or _spec_sha256(job_from_dict(row["detail"]["job"], source=job_id).to_json())
    if _spec_sha256(spec.to_json()) != accepted:
        return f"the resumed job's spec differs from job {job_id!r} as {party.name!r} accepted it"
    if attempt <= rec.attempt:
        return f"attempt {attempt} of job {job_id!r} is not newer than {party.name!r}'s attempt {rec.attempt}"
    try:
        data = _data_sha256(party, spec)
    except OSError:
        return f"{party.name!r} cannot read its table of job {job_id!r}"
    if rec.spec_sha256 and data != rec.data_sha256:
        return f"{party.name!r}'s table changed since job {job_id!r} ran: a resume would not be the same job"
    return check_job(party.config, spec, caller, running_jobs=party._running())


# ------------------------------------------------------------------ initiator side
def resume_as_initiator(party: "Party", caller: str, job_id: str) -> str:
    """ResumeJob from our own operator: check, then propose and start the next attempt on every party."""
    from .job import PartyJob

    party._require_self(caller, "resume jobs")
    check_name(job_id, "job id", error=ConfigError)
    if not party._serving:
        raise FedcreditError(f"party {party.name!r} is shutting down")
    with party._lock:
        live = party._jobs.get(job_id)
        if live is not None and not live.done:
            raise FedcreditError(f"job {job_id!r} is {live.state} on {party.name!r}; resume it once it has ended")
    row = party.store.job(job_id)
    if row is None:
        from ..transport.control import NotFound

        raise NotFound(f"no job {job_id!r} on {party.name!r}")
    if row["initiator"] != party.name:
        raise PolicyError(f"job {job_id!r} was initiated by {row['initiator']!r}; resume it there")
    spec = job_from_dict(row["detail"]["job"], source=f"job {job_id}")
    rec = Record.load(party, job_id)
    attempt = rec.attempt + 1
    why = check_same_job(party, job_id, spec, row, attempt, party.name)
    if why is not None:
        raise PolicyError(f"cannot resume job {job_id!r}: {why}")
    job = PartyJob(job_id, spec, initiator=party.name, role=spec.parties[party.name].role, proposer=party.name,
                   attempt=attempt)
    _accept(party, job, rec, by=party.name, state="proposed")
    party._emit(job, "state", state="proposed", message=f"job {job_id} resumed by {party.name} (attempt {attempt})")
    t = threading.Thread(target=party._initiate, args=(job,), name=f"{party.name}-resume-{job_id}", daemon=True)
    t.start()
    return job_id


def _accept(party: "Party", job: "PartyJob", rec: Record, *, by: str, state: str) -> None:
    """Make ``job`` (attempt ``job.attempt``) the live job: record, store state, audit, memory."""
    rec.attempt = job.attempt
    rec.save()
    party.audit.append("job.resumed", job_id=job.job_id, attempt=job.attempt, by=by,
                       spec_sha256=rec.spec_sha256, data_sha256=rec.data_sha256)
    party.store.set_state(job.job_id, state, f"resumed (attempt {job.attempt})")
    job.state = state
    with party._lock:
        party._jobs[job.job_id] = job
        party._attempts[channel_id(job.job_id, job.attempt)] = job.job_id


# ------------------------------------------------------------------ peer side
def accept_resume(party: "Party", caller: str, job_id: str, job_json: str, initiator_head: str,
                  attempt: int) -> tuple[bool, str]:
    """ProposeJob with ``attempt > 0`` from a peer: accept the resume if it is the same job, else refuse."""
    from ..jsonlimits import loads_limited
    from .job import PartyJob

    try:
        spec = job_from_dict(loads_limited(job_json, what=f"job resumed by {caller!r}", max_bytes=JOB_JSON_MAX),
                             source=f"job resumed by {caller}")
    except (ConfigError, DataError) as exc:
        return False, f"malformed job: {exc}"[:2000]
    with party._lock:
        stale = party._jobs.get(job_id)
    if stale is not None and not stale.done:
        # e.g. this party was stopped (SIGSTOP) past the deadline: the others ended the attempt it still runs
        if stale.initiator != caller:
            return False, f"job {job_id!r} was not initiated by {caller!r}"
        party._cancel_local(stale, f"superseded by attempt {attempt} of job {job_id!r}", "failed")
        if stale.thread is not None:
            stale.thread.join(timeout=max(5.0, party.config.transport.deadline))
        if stale.thread is not None and stale.thread.is_alive():
            return False, f"{party.name!r} is still ending its previous attempt of job {job_id!r}; retry"
        party._set_state(stale, "failed", f"superseded by attempt {attempt}")
    row = party.store.job(job_id)
    why = check_same_job(party, job_id, spec, row, attempt, caller)
    if why is not None:
        party.audit.append("job.decision", job_id=job_id, party=party.name, accepted=False, reason=why,
                           attempt=attempt)
        return False, why
    job = PartyJob(job_id, spec, initiator=caller, role=row["role"], proposer=caller, attempt=attempt)
    _accept(party, job, Record.load(party, job_id), by=caller, state="pending")
    party.store.add_decision(job_id, party.name, True, "")
    party.audit.append("job.decision", job_id=job_id, party=party.name, accepted=True, reason="", attempt=attempt,
                       proposer_head=initiator_head[:200])
    log.info("job %s: resume (attempt %d) proposed by %s accepted", job_id, attempt, caller)
    return True, ""


# ------------------------------------------------------------------ while the job runs
def before_job(party: "Party", job: "PartyJob") -> None:
    """The first attempt that runs here records the spec and data digests a later resume is checked against."""
    rec = Record.load(party, job.job_id)
    if rec.spec_sha256:
        return
    rec.spec_sha256 = _spec_sha256(job.spec.to_json())
    rec.data_sha256 = _data_sha256(party, job.spec)
    rec.save()


def after_step(party: "Party", job: "PartyJob", step: str, table) -> None:
    """Record (first attempt) or check (later ones) the rows the next step sees."""
    digest = rows_sha256(table)
    rec = Record.load(party, job.job_id)
    if step not in rec.rows:
        rec.rows[step] = digest
        rec.save()
    elif rec.rows[step] != digest:
        raise DataError(f"the rows after step {step!r} differ from those of the interrupted run on {party.name!r}: "
                        f"not the same job, refusing to continue it")


def step_checkpoint(job: "PartyJob", step, channel, me: str, artifacts) -> Checkpoint | None:
    """``ctx.checkpoint`` of a step that trains in rounds (kept in the step's ``artifacts``); on a resumed job,
    the round every party agreed on."""
    if step.kind not in ROUND_KINDS:
        return None
    ck = Checkpoint(artifacts)
    if job.attempt == 0:
        ck.clear()  # a new job: whatever is there is not ours
        return ck
    ck.resume_round = agree(channel.sub("resume"), me, list(job.spec.parties), ck.rounds())
    log.info("job %s step %s: resuming from round %s", job.job_id, step.name, ck.resume_round)
    return ck


def finish(party: "Party", job: "PartyJob") -> None:
    """The job succeeded here: round checkpoints are no longer needed (models are in their own files)."""
    for step in job.spec.steps:
        if step.kind in ROUND_KINDS:
            try:
                Checkpoint(FileArtifacts(state_path(party.state_dir, "jobs", job.job_id, step.name))).clear()
            except Exception:  # noqa: BLE001 - cleaning up never fails a job
                log.exception("removing checkpoints of job %s failed", job.job_id)



def notify_interrupted(party: "Party", job_ids: list[str]) -> None:
    """Tell the other parties of jobs a restart interrupted here that this party lost them.

    A party that restarts within ``[transport].deadline`` answers health checks
    again before anyone notices it was gone, while its peers still wait for
    messages of the job it no longer runs. So on start, for every job the store
    marked interrupted: an initiator cancels the job on every other participant;
    any other party reports the job failed to its initiator (for the attempt it
    had accepted, so a newer attempt is not touched). Best effort, in the
    background: a peer that is down fails the job by its own liveness check.
    """
    for job_id in job_ids:
        row = party.store.job(job_id)
        if row is None:
            continue
        reason = f"party {party.name!r} restarted while the job was running"
        party.store.set_state(job_id, "failed", reason)
        attempt = Record.load(party, job_id).attempt
        if row["initiator"] == party.name:
            peers = [p for p in (row["detail"]["job"].get("parties") or {}) if p != party.name]
            threading.Thread(target=_cancel_quietly, args=(party, job_id, reason, peers, attempt), daemon=True).start()
        else:
            party._reports.put((row["initiator"], {
                "job_id": job_id, "party": party.name, "kind": "state", "state": "failed", "step": "",
                "message": reason, "fraction": None, "detail": {"attempt": attempt}, "time": time.time()}, True))


def _cancel_quietly(party: "Party", job_id: str, reason: str, peers: list[str], attempt: int) -> None:
    for p in peers:
        try:  # only that attempt: a resume may already have started the next one
            party._client(p, timeout=min(5.0, party.config.transport.deadline)).cancel(job_id, reason, attempt=attempt)
        except Exception as exc:  # noqa: BLE001 - best effort: the peer may be down too
            log.info("could not tell %s that job %s was interrupted: %s", p, job_id, exc)
