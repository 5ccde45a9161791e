"""The party process: a :class:`Party` owns its transport, store, audit log, jobs and services.

A :class:`Party` owns one :class:`~fedcredit.transport.grpc.GrpcTransport`
(mutual TLS, one port for peers and for the local CLI), a SQLite
:class:`~fedcredit.party.store.Store`, an :class:`~fedcredit.audit.AuditLog`
and a log file, all under the config's ``state_dir``. It is the composition
root; the job lifecycle lives in its own modules:

* :mod:`fedcredit.party.control`: the Control service (submit, propose, start, report, cancel, watch, list);
* :mod:`fedcredit.party.worker` and :mod:`fedcredit.party.runner`: a job's worker thread and the step runner
  (shared with the Python API's in-process mode);
* :mod:`fedcredit.party.events`: events to local watchers and to the initiator;
* :mod:`fedcredit.party.supervise`: liveness of the other participants, expiry of jobs that never start.

Nothing a peer or the CLI sends can crash the process: every call ends in a
reply or a status.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from .. import __version__
from .. import compute as _compute
from ..audit import AuditLog
from ..certs import TlsFiles
from ..config import PartyConfig, known_step_kinds
from ..errors import PolicyError
from ..ids import SafeFormatter, private_dir
from ..transport.control import ControlClient, NotFound, add_servicers
from ..transport.grpc import GrpcTransport
from ..transport.scoring import add_scoring_servicers
from ..serving import ScoringService
from . import logfmt
from . import resume as _resume
from .approvals import Approvals
from .control import ControlMixin
from .events import EventsMixin
from .job import PartyJob
from .limits import PeerRate
from .lock import StateLock
from .metrics import PartyMetrics
from .peers import PeerAccess
from .store import Store
from .supervise import SupervisorMixin
from .worker import WorkerMixin

__all__ = ["Party", "PartyJob"]

log = logging.getLogger("fedcredit.party")


class Party(ControlMixin, WorkerMixin, EventsMixin, SupervisorMixin):
    """One party of a federation: the composition root of its services.

    The Control handlers are in :mod:`.control`, the job worker in
    :mod:`.worker` (steps through :mod:`.runner`), events in :mod:`.events`,
    supervision in :mod:`.supervise`; this class owns the process's state
    (transport, store, audit log, jobs) and its start and stop.

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
