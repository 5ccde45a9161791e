"""The data owner's approval queue: a proposal accepted by policy waits for the operator's decision.

``[policy] approval = "manual"`` (or a matching ``[[policy.approval_rules]]``
entry) makes a proposal that passed every policy check wait in the state
``pending-approval`` instead of ``pending``. While it waits:

* the initiator cannot start it (``StartJob`` needs ``pending``), and shows
  "waiting for approval by <party>" in its progress;
* the operator sees it with ``fedcredit jobs pending`` or in the console:
  proposer, purpose, steps and parameters, the columns of our tables it
  would use, the peers and what each step reveals to whom
  (:mod:`fedcredit.party.reveals`);
* ``approve`` moves it to ``pending`` (the initiator then starts it once every
  party approved), ``reject`` ends it with the operator's reason everywhere;
  undecided, it expires after ``[policy] approval_expiry_hours`` (24 h).

Only this party's operator decides: the Control RPCs ``PendingJobs`` and
``DecideJob`` are operator-only in ``transport/grpc/authz.py`` (a peer's call is
refused before it reaches this module) and :meth:`Approvals.decide` checks
the caller again. Every decision — with the approver's identity (the
operator's certificate name, or the console's login) and the reason — is an
``job.approval`` record in the hash-chained audit log, written before the
job's state changes, so no job runs on an approval the log does not show.

The peer reports the decision to the initiator as a ``decision`` event
(ReportStatus); the initiator accepts it only from that party, for a party it
is waiting for, once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import ConfigError, FedcreditError, ProtocolError
from ..ids import check_name
from .policy import effective_columns
from .reveals import reveals

if TYPE_CHECKING:  # pragma: no cover
    from .party import Party, PartyJob

__all__ = ["Approvals", "PENDING_APPROVAL"]

log = logging.getLogger("fedcredit.party")

PENDING_APPROVAL = "pending-approval"
#: The initiator waits this long past a peer's announced expiry for its (expiry) report before giving up.
_EXPIRY_SLACK = 30.0
_REASON_MAX = 2000


def _header_columns(table) -> list[str] | None:
    """Feature columns of a CSV table (its header minus id and label); None when not a readable CSV."""
    import csv

    if table.path.suffix.lower() != ".csv":
        return None
    try:
        with table.path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return [c for c in header if c not in (table.id_column, table.label_column)]


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


class Approvals:
    """The approval queue of one :class:`~fedcredit.party.Party` (both sides: data owner and initiator)."""

    def __init__(self, party: "Party"):
        self.p = party
        self._decide_lock = threading.Lock()

    # ------------------------------------------------------------------ data owner
    def needs_approval(self, spec, proposer: str) -> bool:
        """True when a proposal from ``proposer`` (a peer) waits for the operator (own jobs never do)."""
        if proposer == self.p.name:
            return False
        return self.p.config.policy.approval_for(proposer, spec.purpose or "", len(spec.steps)) == "manual"

    def expiry(self) -> float:
        return time.time() + self.p.config.policy.approval_expiry_hours * 3600.0

    def describe(self, job: "PartyJob") -> dict:
        """What the operator decides on (JSON-able; every string as the proposer wrote it: escape when showing)."""
        from ..config import _thaw

        spec, me = job.spec, self.p.name
        mine = spec.parties.get(me)
        cols = effective_columns(self.p.config, spec, job.proposer) if mine is not None and mine.table else None
        if cols is None and mine is not None and mine.table in self.p.config.tables:
            cols = _header_columns(self.p.config.tables[mine.table])  # "all": name them, from the file's header
        return {
            "job_id": job.job_id, "name": spec.name, "proposer": job.proposer, "purpose": spec.purpose or "",
            "state": job.state, "created": job.created, "expires": job.approval_expires,
            "parties": dict(spec.roles), "peers": [p for p in spec.parties if p != me],
            "role": job.role, "table": mine.table if mine else None, "columns": list(cols or []),
            "steps": [{"name": s.name, "kind": s.kind, "params": _thaw(s.params), "reveals": reveals(s.kind, spec.roles)}
                      for s in spec.steps],
        }

    def pending(self, caller: str) -> list[dict]:
        """Jobs waiting for this party's operator, oldest first."""
        self.p._require_self(caller, "see the approval queue")
        with self.p._lock:
            jobs = [j for j in self.p._jobs.values() if j.state == PENDING_APPROVAL]
        return [self.describe(j) for j in sorted(jobs, key=lambda j: j.created)]

    def decide(self, caller: str, job_id: str, approve: bool, reason: str = "", *, approver: str | None = None) -> str:
        """Approve or reject ``job_id`` as this party's operator; audited with ``approver`` and ``reason``.

        Parameters
        ----------
        caller : str
            The certificate name of the caller; must be this party.
        approver : str, optional
            Who decided, for the audit log; default: the operator's certificate.
        """
        p = self.p
        p._require_self(caller, "approve or reject jobs")
        check_name(job_id, "job id", error=ConfigError)
        reason = str(reason).strip()[:_REASON_MAX]
        if not approve and not reason:
            raise ConfigError("a rejection needs a reason (--reason): the proposer and every party see it")
        who = approver or f"operator certificate {caller!r}"
        job = p._job(job_id)
        with self._decide_lock:  # one decision per job, even from the CLI and the console at once
            if job.state != PENDING_APPROVAL:
                raise FedcreditError(f"job {job_id!r} is {job.state}, not waiting for approval")
            decision = "approved" if approve else "rejected"
            # the record first: a job never runs on a decision the log does not hold
            p.audit.append("job.approval", job_id=job_id, proposer=job.proposer, decision=decision, approver=who,
                           reason=reason)
            if approve:
                job.approved_at = time.time()
                p._set_state(job, "pending", f"approved by {who}")
                why = reason
            else:
                why = f"rejected by {p.name}'s operator ({who}): {reason}"
                p._set_state(job, "refused", why)
        log.info("job %s %s by %s%s", job_id, decision, who, f": {reason}" if reason else "")
        self._report(job, decision, why, who)
        return f"job {job_id} {decision} by {who}"

    def expire_if_due(self, job: "PartyJob", now: float) -> bool:
        """End a ``pending-approval`` job whose approval expired (called by the supervisor)."""
        if job.state != PENDING_APPROVAL or now < job.approval_expires:
            return False
        hours = self.p.config.policy.approval_expiry_hours
        why = f"approval by {self.p.name} expired: no decision within {hours:g} h"
        with self._decide_lock:
            if job.state != PENDING_APPROVAL:
                return False
            self.p.audit.append("job.approval", job_id=job.job_id, proposer=job.proposer, decision="expired",
                                approver="", reason=why)
            self.p._set_state(job, "refused", why)
        self._report(job, "rejected", why, "")
        return True

    def _report(self, job: "PartyJob", decision: str, why: str, who: str) -> None:
        ev = self.p._emit(job, "decision", state=decision, message=why, detail={"approver": who})
        self.p._forward(job, ev, important=True)

    def waiting(self, job: "PartyJob") -> bool:
        """True while ``job`` waits for an operator's decision (it does not count against max_concurrent_jobs)."""
        if job.state == "pending" and job.approved_at and job.thread is None:
            return True  # approved here, waiting for the other owners' operators
        return job.state == "proposed" and bool(job.awaiting) and len(job.approvals) < len(job.awaiting)

    # ------------------------------------------------------------------ initiator
    def reported(self, job: "PartyJob", caller: str, event: dict) -> None:
        """A participant's decision event (initiator side): recorded once per participant."""
        state = event.get("state")
        if state not in ("approved", "rejected"):
            raise ProtocolError(f"{caller!r} reported an unknown decision {str(state)[:40]!r}")
        # kept even before this party knows it waits for ``caller`` (its answers to the other proposals may still
        # be outstanding); only a party's own decision, only once, and only parties it waits for count
        with job.cond:
            if caller in job.approvals:
                raise ProtocolError(f"{caller!r} already reported its decision on job {job.job_id!r}")
            approver = str((event.get("detail") or {}).get("approver", ""))[:200]
            job.approvals[caller] = (state == "approved", str(event.get("message", ""))[:_REASON_MAX], approver)
            job.cond.notify_all()

    def await_peers(self, job: "PartyJob", pending: dict[str, float]) -> str | None:
        """Wait until every party in ``pending`` ({party: expiry time}) approved.

        Returns the reason the job cannot start (a rejection or an expiry), or
        None when all approved or the job was cancelled meanwhile (the caller
        checks ``job.cancel``).
        """
        p = self.p
        with job.cond:
            job.awaiting.update(pending)
        for peer, exp in sorted(pending.items()):
            ev = p._emit(job, "decision", party=peer, state=PENDING_APPROVAL,
                         message=f"waiting for approval by {peer} (expires {_when(exp)})")
            log.info("job %s: %s", job.job_id, ev["message"])
        give_up = max(pending.values()) + _EXPIRY_SLACK
        with job.cond:
            while True:
                decided = {q: job.approvals[q] for q in pending if q in job.approvals}
                rejected = {q: d for q, d in decided.items() if not d[0]}
                if (rejected or len(decided) == len(pending) or job.cancel.is_set() or p._stop.is_set()
                        or time.time() > give_up):
                    break
                job.cond.wait(0.5)
        for q, (ok, why, _) in sorted(decided.items()):
            p._decide(job, q, ok, why)
        if rejected:
            return "; ".join(d[1] for _, d in sorted(rejected.items()))
        missing = sorted(q for q in pending if q not in decided)
        if missing and not job.cancel.is_set() and not p._stop.is_set():
            return f"no approval by {', '.join(missing)} before it expired"
        return None
