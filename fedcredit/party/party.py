"""The party process: Control/Health servicers, job lifecycle, workers, supervision.

A :class:`Party` owns one :class:`~fedcredit.transport.grpc.GrpcTransport`
(mutual TLS, one port for peers and for the local CLI), a SQLite
:class:`~fedcredit.party.store.Store`, an :class:`~fedcredit.audit.AuditLog`
and a log file, all under the config's ``state_dir``.

Lifecycle of a job (see ``protos/fedcredit/v1/control.proto``)::

    CLI --SubmitJob--> initiator: parse, own policy check, job id
    initiator --ProposeJob--> every other party: policy check -> accept / refuse(reason)
    any refusal or unreachable party: the job ends everywhere with that reason
    initiator --StartJob--> every party; each runs its role in a worker thread:
        for each step: StepContext -> get_step(kind)(ctx) -> result, seconds, bytes
    parties --ReportStatus--> initiator (progress, step results, final state)
    initiator --WatchJob stream--> CLI

A failing step fails the job on every party with its reason: the failing party
aborts its channel (peers' pending receives end naming it) and reports to the
initiator, which cancels the job everywhere. While a job runs, each party
checks that the other participants are alive; one unreachable for longer than
``[transport].deadline`` fails the job with a reason naming it. Nothing a peer
or the CLI sends can crash the process: every call ends in a reply or a status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .. import compute as _compute
from ..audit import AuditLog, _jsonable, canonical_json
from ..certs import TlsFiles
from ..config import JobSpec, PartyConfig, job_from_dict, known_step_kinds
from ..errors import ConfigError, FedcreditError, JobCancelled, PeerError, PolicyError, ProtocolError
from ..ids import SafeFormatter, check_name, private_dir, state_path
from ..jsonlimits import loads_limited
from ..protocols.context import StepContext
from ..protocols.registry import get_step
from ..transport.base import Channel
from ..transport.control import ControlClient, NotFound, add_servicers
from ..transport.grpc import GrpcTransport
from ..transport.scoring import add_scoring_servicers
from ..serving import ScoringService
from .alignment import unaligned_steps, verify_aligned
from .checks import check_party_data, check_steps, public_text, step_notes
from . import logfmt
from .approvals import PENDING_APPROVAL, Approvals
from .metrics import PartyMetrics, cert_expiries
from .policy import DATA_ROLES, check_job, effective_columns
from . import resume as _resume
from .limits import PeerRate
from .lock import StateLock
from .peers import PeerAccess
from .report import write_report
from .store import TERMINAL, Store

__all__ = ["Party", "PartyJob"]

log = logging.getLogger("fedcredit.party")

_PUBLIC_RESULT_MAX = 16_384
#: A job file / proposal as JSON (a job is a few kB; parameters with column lists stay well below).
_JOB_JSON_MAX = 256 * 1024
#: Generated job ids are ``<name>-<YYYYmmdd>-<HHMMSS>-<6 hex>`` (23 characters after the name), within 63.
_NAME_IN_JOB_ID = 40
_HEAD_RE = re.compile(r"[0-9]{1,19}:[0-9a-f]{64}")
_EVENT_KINDS = frozenset({"state", "step", "progress"})
_EVENT_STATES = frozenset({"", "proposed", "pending", PENDING_APPROVAL, "running"}) | TERMINAL
_MESSAGE_MAX = 2000


def _short(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    return msg if isinstance(exc, FedcreditError) else f"{type(exc).__name__}: {msg}"


@dataclass
class PartyJob:
    """In-memory state of one job on this party."""

    job_id: str
    spec: JobSpec
    initiator: str
    role: str
    proposer: str
    state: str = "proposed"
    reason: str = ""
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    cancel_state: str = "cancelled"
    events: list[dict] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    party_state: dict[str, str] = field(default_factory=dict)  # initiator: final state per party
    party_steps: dict[str, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    channel: Channel | None = None
    thread: threading.Thread | None = None
    down_since: dict[str, float] = field(default_factory=dict)
    # approval queue (party/approvals.py): on the data owner, until when the operator may decide and when it
    # approved; on the initiator, the parties it waits for and their decisions {party: (ok, reason, approver)}
    approval_expires: float = 0.0
    approved_at: float = 0.0
    awaiting: dict[str, float] = field(default_factory=dict)
    approvals: dict[str, tuple] = field(default_factory=dict)
    attempt: int = 0  # 0: the original run; n: the n-th resume (party/resume.py)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


class Party:
    """One party of a federation.

    Parameters
    ----------
    config : PartyConfig
        From :func:`fedcredit.config.load_party_config`.

    Examples
    --------
    >>> party = Party(load_party_config("parties/bank.toml"))   # doctest: +SKIP
    >>> port = party.start()                                    # doctest: +SKIP
    >>> party.stop()                                            # doctest: +SKIP
    """

    def __init__(self, config: PartyConfig):
        self.config = config
        self.name = config.name
        self.state_dir = Path(config.state_dir)
        private_dir(self.state_dir, tighten=True)  # keys, tokens, model parts: 0700 (issue #23 item 10)
        # first, before anything in the state dir is opened: one process per state dir (see party/lock.py)
        self._state_lock = StateLock(self.state_dir)
        try:
            self._init_locked(config)
        except BaseException:
            self._state_lock.release()
            raise

    def _init_locked(self, config: PartyConfig) -> None:
        self._log_handler = self._setup_logging()
        self.store = Store(self.state_dir / "party.sqlite")
        self._interrupted = self.store.mark_interrupted()
        for jid in self._interrupted:
            log.warning("job %s was interrupted by a restart; marked failed", jid)
        self.audit = AuditLog(self.state_dir / "audit.log")
        unknown = sorted(set(config.policy.allowed_steps or ()) - set(known_step_kinds()))
        if unknown:
            log.warning("[policy].allowed_steps names step kinds not installed here: %s", ", ".join(unknown))
        tls = TlsFiles(config.tls.ca, config.tls.cert, config.tls.key) if config.tls else None
        tr = config.transport
        self.transport = GrpcTransport(
            party=config.name, listen=config.listen, tls=tls, peers=dict(config.peers), insecure=config.insecure,
            max_message_bytes=tr.max_message_mib * 2**20, deadline=tr.deadline, retries=tr.retries,
            liveness_grace=min(2.0, tr.deadline), peer_rate=tr.peer_messages_per_second, peer_burst=tr.peer_burst,
            peer_inflight=tr.peer_inflight, orphan_ttl=tr.orphan_seconds,
            # every listed peer and our own operator may each hold their full share of calls at once, plus the
            # strangers' 4, and threads remain: a flooding caller delays nobody else (docs/transport.md)
            peer_calls=tr.peer_inflight + 8, max_workers=max(64, (len(config.peers) + 1) * (tr.peer_inflight + 8) + 16),
        )
        self._proposals = PeerRate(tr.peer_proposals_per_minute, "job proposals")
        self.approvals = Approvals(self)
        add_servicers(self.transport.server, self)
        # the one authorization check (transport/grpc/authz.py) asks the party about revocations and job roles
        self.peers = PeerAccess(config, self.transport, self.audit)  # [peers] minus revoked ones (party/peers.py)
        self.transport.refusal_reason = self.peers.refusal_reason
        self.transport.job_guard = self._job_guard
        # federated scoring, audit head exchange, revocation, export (fedcredit.serving)
        self.scoring = ScoringService(config, self.transport, self.audit, self.store, peers=self.peers)
        add_scoring_servicers(self.transport.server, self.scoring)
        self.peers.on_reload.append(self._config_reloaded)  # 'party reload': new peers can take part in jobs too
        self.metrics = PartyMetrics(self)  # /metrics on the console listener (party/metrics.py)
        self.metrics.time_scoring(self.scoring)
        self.peers.reload_hooks.append(self._reload_tls)  # `fedcredit party reload`: certificate rotation
        self.console = None
        self._tls = tls
        # heavy crypto of this party's steps runs here (docs/compute.md); a distributed backend connects on first use
        self.compute = _compute.from_config(config.compute)
        self._prev_compute = _compute.set_default(self.compute)
        self._lock = threading.RLock()
        self._jobs: dict[str, PartyJob] = {}
        self._attempts: dict[str, str] = {}  # channel id of a resumed attempt -> job id (party/resume.py)
        self._serving = False
        self._stop = threading.Event()
        self._reports: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def _setup_logging(self) -> logging.Handler:
        h = logging.FileHandler(self.state_dir / "party.log", encoding="utf-8")
        # control characters in any field (a peer's job id, tag, reason) are escaped: no forged lines
        h.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
                       if self.config.log_format != "json" else logfmt.JsonFormatter(self.name, self.config.peers))
        h.setLevel(self.config.log_level)
        root = logging.getLogger("fedcredit")
        root.addHandler(h)
        if root.level == logging.NOTSET or root.level > logging.getLevelName(self.config.log_level):
            root.setLevel(self.config.log_level)
        return h

    def start(self) -> int:
        """Start serving; returns the bound port."""
        self.port = self.transport.start()
        self.scoring.start()
        self._serving = True
        for target, name in ((self._supervise, "supervisor"), (self._report_loop, "reporter")):
            t = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._start_console()
        self.audit.append("party.started", party=self.name, port=self.port, version=__version__)
        # the other parties of a job this process was running learn it is gone (a restart faster than their
        # liveness deadline would otherwise leave them waiting): party/resume.py
        _resume.notify_interrupted(self, self._interrupted)
        log.info("party %s serving on port %d (%s), state dir %s, compute %s", self.name, self.port,
                 "INSECURE" if self.config.insecure else "mTLS", self.state_dir, self.compute.describe())
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        """Cancel running jobs, stop serving (``grace`` seconds for in-flight calls), close the store."""
        if self._stop.is_set():
            return
        self._serving = False
        with self._lock:
            running = [j for j in self._jobs.values() if not j.done]
        for j in running:
            self._cancel_local(j, f"party {self.name!r} is shutting down", "failed")
        for j in running:
            if j.thread is not None:
                j.thread.join(timeout=grace)
        self._stop.set()
        self._stop_console()
        self.scoring.stop()
        try:
            self.transport.stop(grace)
        finally:
            for t in self._threads:
                t.join(timeout=2.0)
            self.audit.append("party.stopped", party=self.name)
            self.store.close()
            if _compute.current() is self.compute:
                _compute.set_default(self._prev_compute)
            self.compute.close()
            log.info("party %s stopped", self.name)
            logging.getLogger("fedcredit").removeHandler(self._log_handler)
            self._log_handler.close()
            self._state_lock.release()

    def _config_reloaded(self, cfg: PartyConfig) -> None:
        """Apply a reloaded config's ``[peers]`` and ``[policy]`` to job submission and proposals."""
        from dataclasses import replace as _replace

        with self._lock:
            self.config = _replace(self.config, peers=cfg.peers, policy=cfg.policy)

    def _reload_tls(self, cfg: PartyConfig) -> str:
        """Pick up new TLS files (renewed certificate/key, CA bundle) named by the re-read config, without a restart.

        Checked before use (an expired or foreign certificate raises ConfigError and the party keeps serving
        with the old one); audited with the new certificate's fingerprint and expiry.
        """
        if cfg.tls is None or self._tls is None:
            return ""
        from .rotation import reload_tls

        return reload_tls(self, cfg)

    def _start_console(self) -> None:
        """The operator's web console and /metrics, when ``[console] listen`` is set (party/console.py)."""
        if self.config.console.listen:
            from .console import Console

            self.console = Console(self)
            self.console.start()

    def _stop_console(self) -> None:
        if self.console is not None:
            try:
                self.console.stop()
            except Exception:  # noqa: BLE001 - stopping the party must go on
                log.exception("stopping the console failed")

    # ------------------------------------------------------------------ helpers
    def _client(self, peer: str, timeout: float | None = None) -> ControlClient:
        return ControlClient(self.transport.grpc_channel(peer), peer,
                             timeout=timeout if timeout is not None else self.config.transport.deadline)

    def _job(self, job_id: str) -> PartyJob:
        with self._lock:
            j = self._jobs.get(job_id)
        if j is None:
            raise NotFound(f"no job {job_id!r} is active on {self.name!r}")
        return j

    def _require_self(self, caller: str, what: str) -> None:
        if caller != self.name:
            raise PolicyError(f"only {self.name!r}'s own operator may {what} (caller: {caller!r})")

    def _require_peer(self, caller: str) -> None:
        if caller not in self.transport.peers:
            raise PolicyError(f"party {caller!r} is not a peer of {self.name!r}")

    def _job_guard(self, caller: str, job_id: str) -> None:
        """PolicyError unless ``caller`` has a role in ``job_id`` (for jobs this party holds; see transport/authz.py)."""
        if caller == self.name:
            return
        with self._lock:
            # the job id, or the channel of one of its resumed attempts
            job = self._jobs.get(job_id) or self._jobs.get(self._attempts.get(job_id, ""))
        if job is not None and caller not in job.spec.parties:
            raise PolicyError(f"party {caller!r} has no role in job {job_id!r} on {self.name!r}")

    def _running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values()
                       if j.state in ("pending", "running", "proposed") and not self.approvals.waiting(j))

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

    # ================================================================== Control service
    # -- local CLI: submit --------------------------------------------------------
    def submit_job(self, caller: str, job_json: str, source: str) -> str:
        self._require_self(caller, "submit jobs")
        if not self._serving:
            raise FedcreditError(f"party {self.name!r} is shutting down")
        data = loads_limited(job_json, what=source or "job", max_bytes=_JOB_JSON_MAX, error=ConfigError)
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
            self._fail_everywhere(job, f"could not start the job: {_short(exc)}")

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
                results[peer] = (False, f"no answer: {_short(exc)}")
                unreachable[peer] = _short(exc)

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
                errors[peer] = _short(exc)

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
            problems = [(f"checking this party's data failed: {_short(exc)}", public_text(exc))]
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
            data = loads_limited(job_json, what=f"job proposed by {caller!r}", max_bytes=_JOB_JSON_MAX)
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
        _check_event(job, event, caller)
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

    # ================================================================== workers
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
        step_name = ""
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
            state: dict[str, Any] = {}
            results: list[dict] = []
            for idx, step in enumerate(spec.steps):
                step_name = step.name
                logfmt.set_step(step.name)
                if job.cancel.is_set():
                    raise JobCancelled(job.cancel_reason)
                workdir = state_path(self.state_dir, "jobs", job.job_id, step.name)
                private_dir(workdir)
                before = (dict(ch.stats.bytes), dict(ch.stats.messages))
                started = time.time()
                self.store.set_step(job.job_id, self.name, step.name, step.kind, "running", started=started)
                ev = self._emit(job, "step", state="running", step=step.name,
                                message=f"{step.name} ({step.kind}) started", detail={"index": idx, "kind": step.kind})
                self._forward(job, ev)

                def progress(message: str, fraction: float | None = None, _step=step.name) -> None:
                    frac = None if fraction is None else max(0.0, min(1.0, float(fraction)))
                    e = self._emit(job, "progress", step=_step, message=str(message)[:500], fraction=frac)
                    self._forward(job, e)

                def check_cancelled() -> None:
                    if job.cancel.is_set():
                        raise JobCancelled(job.cancel_reason or "job cancelled")

                checkpoint = _resume.step_checkpoint(job, step, ch.sub(step.name), self.name, workdir)
                ctx = StepContext(
                    job_id=job.job_id, step=step.name, kind=step.kind, party=self.name, roles=spec.roles,
                    params=step.typed_params, channel=ch.sub(step.name), data=state.get("table", data), state=state,
                    workdir=workdir, progress=progress, check_cancelled=check_cancelled, policy=self.config.policy,
                    checkpoint=checkpoint,
                )
                ctx.table = self.config.tables.get(spec.parties[self.name].table or "")  # e.g. its monotone
                t0 = time.perf_counter()
                result = get_step(step.kind)(ctx)
                seconds = time.perf_counter() - t0
                if result is None:
                    result = {}
                if not isinstance(result, dict):
                    raise FedcreditError(f"step {step.name!r} returned {type(result).__name__}, expected a dict")
                result = json.loads(json.dumps(result, default=_json_default))
                _resume.after_step(self, job, step.name, state.get("table", data))  # same aligned rows on a resume
                traffic = _traffic(before, ch.stats, step.name)
                for peer, row in traffic["peers"].items():
                    h = digests.get((step.name, peer))
                    row["sent_digest"] = h.hexdigest() if h else ""
                self.store.set_step(job.job_id, self.name, step.name, step.kind, "succeeded", seconds=seconds,
                                    result={"result": result, "traffic": traffic})
                self.audit.append("step.finished", job_id=job.job_id, step=step.name, kind=step.kind, seconds=round(seconds, 6),
                                  result_sha256=hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest())
                self.audit.append("step.messages", job_id=job.job_id, step=step.name, peers=traffic["peers"])
                results.append({"step": step.name, "kind": step.kind, "seconds": seconds, "result": result,
                                "traffic": traffic})
                public = result.get("public", result if self.name == job.initiator else {})
                text = json.dumps(public, default=str)
                if len(text) > _PUBLIC_RESULT_MAX:
                    public = {"note": f"public result of {len(text)} bytes not forwarded"}
                ev = self._emit(job, "step", state="succeeded", step=step.name,
                                message=f"{step.name} done in {seconds:.2f}s",
                                detail={"kind": step.kind, "seconds": seconds, "public": public,
                                        "bytes_sent": traffic["bytes_sent"], "messages_sent": traffic["messages_sent"]})
                if self.name == job.initiator:
                    job.party_steps[self.name][step.name] = ev["detail"]
                self._forward(job, ev, important=True)
            _resume.finish(self, job)
            self._finish_local(job, "succeeded", "")
        except BaseException as exc:  # noqa: BLE001 - a step failure never takes the party down
            if job.cancel.is_set():
                state, reason = job.cancel_state, job.cancel_reason
            elif isinstance(exc, JobCancelled):
                state, reason = "cancelled", str(exc) or "job cancelled"
            else:
                where = f"step {step_name!r} failed on {self.name}" if step_name else f"job failed on {self.name}"
                reason = f"{where}: {_short(exc)}"
                # what crosses to the other parties (and is stored): no raw value, no path (issue #14 item 7);
                # the full text stays in this party's log
                public = f"{where}: {_crossing_text(exc, self.name, self._known_paths())}"
                if isinstance(exc, PeerError) and exc.peer and exc.peer not in reason:
                    reason += f" (peer {exc.peer!r})"
                    public += f" (peer {exc.peer!r})"
                elif not isinstance(exc, PeerError):
                    blame = _blame(job, exc, reason)
                    reason += blame
                    public += blame
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
            write_report(self, job)
        except Exception:  # noqa: BLE001 - a report failure must not fail the party
            log.exception("writing report.json of job %s failed", job.job_id)

    # ================================================================== supervision
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


def _check_event(job: PartyJob, event: dict, caller: str) -> None:
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


def _blame(job: PartyJob, exc: BaseException, reason: str) -> str:
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


def _crossing_text(exc: BaseException, party: str, paths: list[str]) -> str:
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
    text = _short(exc)
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


def _thaw(v):
    from ..config import _thaw as thaw

    return thaw(v)


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _traffic(before: tuple[dict, dict], stats, step: str) -> dict:
    """Bytes/messages of one step, per peer and per (direction, peer, kind)."""
    b0, m0 = before
    rows = []
    peers: dict[str, dict] = {}
    for key, total in stats.bytes.items():
        db = total - b0.get(key, 0)
        dm = stats.messages.get(key, 0) - m0.get(key, 0)
        if dm <= 0:
            continue
        direction, peer, kind = key
        rows.append({"direction": direction, "peer": peer, "kind": kind, "bytes": db, "messages": dm})
        p = peers.setdefault(peer, {"sent_bytes": 0, "sent_messages": 0, "received_bytes": 0, "received_messages": 0})
        p[f"{direction}_bytes"] += db
        p[f"{direction}_messages"] += dm
    rows.sort(key=lambda r: (r["direction"], r["peer"], r["kind"]))
    return {
        "rows": rows,
        "peers": dict(sorted(peers.items())),
        "bytes_sent": sum(p["sent_bytes"] for p in peers.values()),
        "messages_sent": sum(p["sent_messages"] for p in peers.values()),
        "bytes_received": sum(p["received_bytes"] for p in peers.values()),
    }

