"""Supervision of a party's jobs: liveness of the other participants, expiry of jobs that never start.

While a job runs, each party checks that the other participants are alive;
one unreachable for longer than ``[transport].deadline`` fails the job with a
reason naming it (the initiator fails it everywhere, another party locally).
A pending job its initiator never starts, and an approval nobody decides,
expire.
"""

from __future__ import annotations

import logging
import time

from ..errors import FedcreditError, PeerError
from .approvals import PENDING_APPROVAL
from .job import PartyJob
from .store import TERMINAL

__all__ = ["SupervisorMixin"]

log = logging.getLogger("fedcredit.party")


class SupervisorMixin:
    """The supervisor thread of :class:`~fedcredit.party.Party`."""

    def _supervise(self) -> None:
        """Fail running jobs whose participants are unreachable; expire pending jobs that never start."""
        deadline = self.config.transport.deadline
        while not self._stop.wait(0.5):
            with self._lock:
                jobs = [j for j in self._jobs.values() if not j.done]
            now = time.time()
            for job in jobs:
                try:
                    if job.state == PENDING_APPROVAL:
                        self.approvals.expire_if_due(job, now)
                        continue
                    # an approved job may wait for other parties' operators: up to our own approval window
                    limit = self.config.policy.approval_expiry_hours * 3600 if job.approved_at else max(4 * deadline, 30.0)
                    if job.state == "pending" and now - max(job.created, job.approved_at) > limit:
                        self._set_state(job, "failed", f"job was never started by its initiator {job.initiator!r}")
                        continue
                    if job.state != "running":
                        continue
                    for p in job.spec.parties:
                        if p == self.name or job.party_state.get(p) in TERMINAL:
                            continue
                        self._check_alive(job, p, now, deadline)
                except Exception:  # noqa: BLE001
                    log.exception("supervisor error on job %s", job.job_id)

    def _check_alive(self, job: PartyJob, peer: str, now: float, deadline: float) -> None:
        try:
            self._client(peer, timeout=min(2.0, deadline)).health()
            job.down_since.pop(peer, None)
        except PeerError as exc:
            since = job.down_since.setdefault(peer, now)
            if now - since >= deadline and not job.done:
                reason = f"lost contact with party {peer!r}: unreachable for {now - since:.1f}s ({exc})"
                log.error("job %s: %s", job.job_id, reason)
                if job.initiator == self.name:
                    with self._lock:
                        job.party_state[peer] = "failed"
                    self._fail_everywhere(job, reason)
                else:
                    self._cancel_local(job, reason, "failed")
        except FedcreditError:
            job.down_since.pop(peer, None)
