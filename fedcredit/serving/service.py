"""The scoring service of a party: federated scoring, authorization, audit, governance, export.

One :class:`ScoringService` per party process (``fedcredit party serve`` adds it
to the party's gRPC server). It plays both sides, one module each:

* **guest** (:mod:`fedcredit.serving.guest`; the label holder, its own
  operator calls :meth:`~ScoringService.score`): asks every host of the model
  and combines;
* **host** (:mod:`fedcredit.serving.host`): :meth:`~ScoringService.contribute`
  and :meth:`~ScoringService.decide` answer a guest's request after checking
  it against ``[policy.scoring]`` and the rate limits;
* **governance** (:mod:`fedcredit.serving.governance`): audit-head exchange,
  peer revoke/admit/reload (delegated to the party's
  :class:`~fedcredit.party.peers.PeerAccess`: they decide who may message the
  whole party), export approvals and export.

Every request is appended to the audit log on every party (requester, model,
number of ids, the ids' digests salted with a per-party secret, a digest of
the request, authorization reference, decision). A host checks a request
(peer, guest of the model, authorization, host set, rate limit, replay) before
it writes anything proportional to it: a refusal's record carries the number
of ids and the request's digest, never the ids, and refusals are themselves
rate-limited per peer (:class:`~fedcredit.serving.authz.RefusalBudget`), so a
flood of refused requests grows the log by a bounded amount. Request ids a
host answered are kept in its state directory until they expire
(:class:`~fedcredit.serving.replay.ReplayCache`), so a restart does not reopen
replays. Audit heads are exchanged with every peer every
``[policy.scoring].head_exchange_seconds``; each side stores the head the
other reported for itself (:class:`~fedcredit.serving.heads.PeerHeads`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from pathlib import Path

from ..crypto.secagg import derive_key
from ..errors import DataError, PolicyError
from ..models import explain
from ..protocols.scoring import host as shost
from .authz import RateLimiter, RefusalBudget
from .governance import Governance
from .guest import MAX_REASONS, GuestScoring
from .heads import PeerHeads
from .host import HostScoring
from .registry import ModelRegistry, job_table_from_store
from .replay import REPLAY_FILE, ReplayCache

__all__ = ["ScoringService", "MAX_REASONS"]

log = logging.getLogger("fedcredit.serving")

_SECRET_FILE = "scoring.secret"


def _private_secret(path: Path) -> bytes:
    """32 random bytes kept in ``path`` (mode 0600), created on first use."""
    if path.exists():
        data = path.read_bytes()
        if len(data) == 32:
            return data
        raise DataError(f"{path}: corrupt scoring secret (move it aside; masks and audit digests will change)")
    data = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return data


class ScoringService(GuestScoring, HostScoring, Governance):
    """Scoring and governance handler of one party.

    Parameters
    ----------
    config : PartyConfig
    transport : GrpcTransport
        The party's transport (peer list, cached client channels).
    audit : AuditLog
    store : Store, optional
        To find the table a job used.
    peers : PeerAccess
        Who may message the party (:class:`fedcredit.party.peers.PeerAccess`):
        scoring refuses non-peers with its reason, and the governance calls
        revoke/admit/reload go to it. The service forgets a revoked peer's
        mask secrets and applies a reloaded policy through its hooks.
    """

    def __init__(self, config, transport, audit, store=None, *, peers):
        self.config = config
        self.name = config.name
        self.transport = transport
        self.audit = audit
        self.state_dir = Path(config.state_dir)
        self.policy = config.policy.scoring
        self.proposers = tuple(config.policy.proposers)
        self.reason_texts = dict(config.policy.reasons)
        self.store = store
        self.registry = ModelRegistry(self.name, self.state_dir, config.tables,
                                      job_table_from_store(store, self.name) if store is not None else None)
        self.limiter = RateLimiter(self.policy.max_requests_per_minute, self.policy.max_ids_per_minute)
        self.heads = PeerHeads(self.state_dir / "peer_heads.json")
        self._secret = _private_secret(self.state_dir / _SECRET_FILE)
        self._salt = derive_key(self._secret, "audit-id-salt")
        self._lock = threading.Lock()
        self._pair_secrets: dict[tuple[str, str], bytes] = {}
        self.replay = ReplayCache(self.state_dir / REPLAY_FILE)  # request ids answered (host side), persisted
        self.refusals = RefusalBudget()  # refusals of each peer that get a log record
        self.sessions = shost.SessionTable()  # open SecureBoost requests (host side)
        self._approvals_path = self.state_dir / "export_approvals.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeout = float(config.transport.deadline)
        self.peers = peers
        peers.on_revoke.append(self._forget_peer)
        peers.on_reload.append(self._apply_config)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the periodic audit head exchange (revocations are applied by the party's ``peers``)."""
        if self.policy.head_exchange_seconds > 0:
            self._thread = threading.Thread(target=self._head_loop, name=f"{self.name}-heads", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for peer, n in sorted(self.refusals.drain().items()):
            self.audit.append("score.refusals_suppressed", requester=peer, count=n)
        self.replay.close()

    def _head_loop(self) -> None:
        while not self._stop.wait(self.policy.head_exchange_seconds):
            try:
                self.exchange_heads_now()
            except Exception:  # noqa: BLE001 - never let the loop die
                log.exception("audit head exchange failed")

    def _require_self(self, caller: str, what: str) -> None:
        if caller != self.name:
            raise PolicyError(f"only {self.name!r}'s own operator may {what} (caller: {caller!r})")

    def _require_peer(self, caller: str) -> None:
        self.peers.require_peer(caller)  # PolicyError naming when and why, for a revoked peer

    def _salted(self, digests: list[bytes]) -> list[str]:
        return [hashlib.blake2b(d, digest_size=8, key=self._salt).hexdigest() for d in digests]

    def _log_request(self, kind: str, *, requester: str, model_id: str, digests: list[bytes], auth: dict,
                     decision: str, **extra) -> None:
        self.audit.append(kind, requester=requester, model=model_id, n_ids=len(digests),
                          id_digests=self._salted(digests), consent_id=str(auth.get("consent_id", ""))[:128],
                          purpose=str(auth.get("purpose", ""))[:64], decision=decision[:1000], **extra)

    def _refused(self, kind: str, exc: Exception, *, requester: str, model_id: str, request_id, **fields) -> None:
        """Audit (and log) a refusal of a peer's message: bounded in size, and rate-limited per peer.

        The record holds the requester, the model, the request id, the reason
        and whatever small ``fields`` the caller passes (the number of ids and
        the request's digest, never the ids). Beyond the peer's
        :class:`RefusalBudget` the refusal is only counted; the next recorded
        one carries the count (``suppressed``). A record is below 4 KiB even
        with escaped characters everywhere (model id <= 257 ASCII characters,
        request id <= 40, reason <= 300, consent id <= 128, purpose <= 64;
        about 0.6 KiB in practice), whatever the request's size, so one peer's
        refusals add at most ``2 x REFUSALS_PER_MINUTE`` records in its first
        minute and ``REFUSALS_PER_MINUTE`` in each one after: under 240 KiB a
        minute (about 36 KiB in practice).
        """
        suppressed = self.refusals.take(requester)
        if suppressed is None:
            return
        if suppressed:
            fields["suppressed"] = suppressed
        self.audit.append(kind, requester=requester, model=model_id, request_id=str(request_id)[:40],
                          decision=f"refused: {exc}"[:300], **fields)
        log.warning("%s refused a %s of %s: %s", self.name, kind, requester, str(exc)[:300])

    def _published_text(self, feature: str) -> str:
        """The reason text this party's ``[policy] reasons`` gives a feature (``col`` or ``party.col``), or ""."""
        return self.reason_texts.get(feature) or self.reason_texts.get(feature.split(".", 1)[-1]) or ""

    def _scale(self, model_id: str) -> dict | None:
        """``pdo``/``base_score``/``base_odds`` of the first scorecard step of the model's job, if any.

        Read once per model (a finished job's steps never change): the job row's JSON is parsed on the first
        request only, not on every one.
        """
        cache = self.__dict__.setdefault("_scales", {})
        key = (id(self.store), model_id)
        if key not in cache:
            if len(cache) > 1024:
                cache.clear()
            cache[key] = self._read_scale(model_id)
        return cache[key]

    def _read_scale(self, model_id: str) -> dict | None:
        if self.store is None:
            return None
        try:
            row = self.store.job(model_id.split("/")[0])
            for st in (row or {}).get("detail", {}).get("job", {}).get("steps", []) or []:
                if isinstance(st, dict) and st.get("kind") == "scorecard":
                    p = {**explain.DEFAULT_SCALE, **(st.get("params") or {})}
                    return {k: float(p[k]) for k in ("pdo", "base_score", "base_odds")}
        except (TypeError, ValueError, AttributeError, KeyError):
            return None
        return None
