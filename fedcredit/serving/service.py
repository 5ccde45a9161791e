"""The scoring service of a party: federated scoring, authorization, audit, revocation, export.

One :class:`ScoringService` per party process (``fedcredit party serve`` adds it
to the party's gRPC server). It plays both sides:

* **guest** (the label holder; its own operator calls :meth:`score`): sends one
  ``Contribute`` to every host of the model in parallel over the cached mTLS
  channels (no per-request handshake) and combines. Hetero LR: that is the
  only round trip. SecureBoost: path-only (see ``protocols/scoring/spec.py``):
  the Contribute carries the first round of path queries and further rounds
  (``Decide``, at most ``max_depth`` round trips in all) go only to hosts with
  pending queries, so the guest learns only the host decisions on each row's
  path;
* **host**: :meth:`contribute` checks the requester and the authorization
  against ``[policy.scoring]`` and the rate limits, refuses with a reason
  (PolicyError → PERMISSION_DENIED) or computes its masked LR part / answers
  the first path queries; :meth:`decide` answers further rounds of an open
  request after validating them (unknown request, foreign split, row out of
  range, two splits of one tree per row and round → ProtocolError). Open
  requests are bounded and expire (:class:`~fedcredit.protocols.scoring.host.SessionTable`).

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

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np

from ..config import load_party_config
from ..crypto.secagg import derive_key
from ..errors import ConfigError, DataError, FedcreditError, PolicyError, ProtocolError
from ..models import explain
from ..models.logistic import quantize, sigmoid
from ..protocols.scoring import guest as sguest
from ..protocols.scoring import host as shost
from ..protocols.scoring import spec
from ..protocols.scoring.parts import load_lr_part
from ..protocols.scoring.spec import Kind
from ..transport.scoring import Contribution, GovernanceClient, Scored, ScoringClient
from .authz import RateLimiter, RefusalBudget, check_authorization
from .export import merge_lr, merge_secureboost
from .heads import PeerHeads
from .registry import ModelRegistry, job_table_from_store
from .replay import REPLAY_FILE, ReplayCache

__all__ = ["ScoringService"]

log = logging.getLogger("fedcredit.serving")

_SECRET_FILE = "scoring.secret"
#: Most reasons per applicant a request may ask for.
MAX_REASONS = 32


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


class ScoringService:
    """Scoring and governance handler of one party.

    Parameters
    ----------
    config : PartyConfig
    transport : GrpcTransport
        The party's transport (peer list, cached client channels).
    audit : AuditLog
    store : Store, optional
        To find the table a job used.
    """

    def __init__(self, config, transport, audit, store=None):
        self.config = config
        #: called with the reloaded config (the party applies its peers and policy to job submission too)
        self.on_reload = None
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
        self._revoked_path = self.state_dir / "revoked.json"
        self._approvals_path = self.state_dir / "export_approvals.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeout = float(config.transport.deadline)
        #: called by reload() with the re-read config; each returns a sentence for the operator (party: TLS files)
        self.reload_hooks: list = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Apply persisted revocations and start the periodic audit head exchange."""
        self._apply_revocations()
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

    def exchange_heads_now(self) -> dict[str, str]:
        """Send our head to every peer and store theirs; returns ``{peer: "ok" | error}``."""
        seq, h = self.audit.head()
        out = {}
        for peer in sorted(self.transport.peers):
            try:
                pseq, ph = GovernanceClient(self.transport.grpc_channel(peer), peer, timeout=min(5.0, self.timeout)) \
                    .exchange_heads(seq, h, self.name)
                self.heads.record(peer, pseq, ph)
                out[peer] = "ok"
            except FedcreditError as exc:
                out[peer] = str(exc)
                log.info("audit head exchange with %s failed: %s", peer, exc)
        return out

    # ------------------------------------------------------------------ helpers
    def _require_self(self, caller: str, what: str) -> None:
        if caller != self.name:
            raise PolicyError(f"only {self.name!r}'s own operator may {what} (caller: {caller!r})")

    def _require_peer(self, caller: str) -> None:
        if caller not in self.transport.peers:
            rec = self._revoked().get(caller)
            if rec is not None:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rec.get("time", 0)))
                raise PolicyError(f"party {caller!r} is not a peer of {self.name!r}: revoked by {self.name!r}'s "
                                  f"operator at {when}" + (f" (reason: {rec['reason']})" if rec.get("reason") else ""))
            raise PolicyError(f"party {caller!r} is not a peer of {self.name!r} (unknown or revoked)")

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

    # ================================================================== guest
    def held_ids(self, caller: str, model_id: str, ids: list[str]) -> np.ndarray:
        """Which of ``ids`` this party (the model's guest) holds in the model's table (bool per id)."""
        self._require_self(caller, "ask which applicants it holds")
        spec.check_model_id(model_id)
        return self.registry.get(model_id).holds(ids)

    def score(self, caller: str, model_id: str, ids: list[str], auth: dict, guest_X=None, feature_names=(),
              unknown: str = "score-as-missing"):
        """Score ``ids`` with ``model_id`` (this party = the model's guest). Returns ``(probabilities, request id)``.

        ``unknown`` as in :meth:`score_full`.
        """
        res = self.score_full(caller, model_id, ids, auth, guest_X, feature_names, unknown=unknown)
        return res.scores, res.request_id

    def score_full(self, caller: str, model_id: str, ids: list[str], auth: dict, guest_X=None, feature_names=(),
                   reasons: int = 0, unknown: str = "score-as-missing") -> Scored:
        """Score ``ids``; with ``reasons`` = K > 0 also each applicant's K strongest reasons (see models.explain).

        ``unknown="refuse"``: ids this party does not hold are not sent to any
        host and get NaN (an applicant the bank does not know is never
        silently scored; ``held`` says which); ``"flag"`` and
        ``"score-as-missing"`` score every id (the caller reports the flag from
        :meth:`held_ids`).
        """
        if unknown == "refuse":
            held = self.held_ids(caller, model_id, ids)
            keep = [i for i, h in zip(ids, held.tolist()) if h]
            n, k = len(ids), int(reasons) if not isinstance(reasons, bool) else 0
            out = Scored(np.full(n, np.nan), np.full(n, np.nan), spec.new_request_id(), held=held)
            if keep:
                sub_X = None if guest_X is None else np.asarray(guest_X)[held]
                got = self.score_full(caller, model_id, keep, auth, sub_X, feature_names, reasons=reasons)
                out.scores[held], out.log_odds[held] = got.scores, got.log_odds
                out.request_id, out.scale, out.k, out.reason_names = got.request_id, got.scale, got.k, got.reason_names
                if got.k:
                    out.reason_index = np.full((n, got.k), -1, dtype=np.int64)
                    out.reason_values = np.zeros((n, got.k))
                    out.reason_index[held], out.reason_values[held] = got.reason_index, got.reason_values
            return out
        self._require_self(caller, "start scoring requests")
        spec.check_model_id(model_id)
        if isinstance(reasons, bool) or not isinstance(reasons, int) or not 0 <= reasons <= MAX_REASONS:
            raise ConfigError(f"reasons must be an int in 0..{MAX_REASONS}; got {reasons!r}")
        blob = spec.id_digests(ids, model_id)
        digests = spec.split_digests(blob)
        rid = spec.new_request_id()
        req_sha = ""
        try:
            check_authorization(dataclasses.replace(self.policy, requesters=(self.name,)), (), caller, auth, len(ids))
            m = self.registry.get(model_id)
            part = m.part
            if part.role != "guest":
                raise PolicyError(f"{self.name!r} is a {part.role} of model {model_id!r}; score from its guest "
                                  f"{part.guest!r}")
            X = self._guest_rows(m, ids, guest_X, list(feature_names))
            req_sha = spec.request_transcript(model_id, rid, part.hosts, blob).hex()
            if part.kind == Kind.SECUREBOOST:
                z, rounds, contrib, names = self._score_trees(part, model_id, rid, blob, auth, X, bool(reasons))
            else:
                replies = self._wait_all({h: self._client(h).contribute_async(model_id, rid, blob, auth, part.hosts,
                                                                              reasons=bool(reasons))
                                          for h in part.hosts})
                z, contrib, names = self._combine_lr(part, X, replies, len(ids), bool(reasons))
                rounds = 1
        except FedcreditError as exc:
            self._log_request("score.request", requester=caller, model_id=model_id, digests=digests, auth=auth,
                              decision=f"failed: {exc}", request_id=rid, request_sha256=req_sha)
            raise
        self._log_request("score.request", requester=caller, model_id=model_id, digests=digests, auth=auth,
                          decision="scored", request_id=rid, request_sha256=req_sha, hosts=list(part.hosts),
                          rounds=rounds, **({"reasons": reasons} if reasons else {}))
        res = Scored(sigmoid(z), z, rid, scale=self._scale(model_id))
        if reasons:
            res.k, res.reason_names = reasons, names
            res.reason_index, res.reason_values = explain.top_reasons(contrib, reasons)
        return res

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

    def _guest_rows(self, m, ids, guest_X, feature_names) -> np.ndarray:
        if guest_X is None:
            X, _ = m.rows_for_ids(ids)
            return X
        guest_X = np.asarray(guest_X, dtype=np.float64)
        lookup = {}
        for j, f in enumerate(feature_names):
            lookup[f] = j
            lookup.setdefault(f"{self.name}.{f}", j)
        missing = [f for f in m.part.features if f not in lookup]
        if missing:
            raise DataError(f"the applicants' data lacks the model's feature(s) {', '.join(missing)}")
        return guest_X[:, [lookup[f] for f in m.part.features]]

    def _client(self, host: str) -> ScoringClient:
        return ScoringClient(self.transport.grpc_channel(host), host, timeout=self.timeout)

    @staticmethod
    def _gather(futures: dict) -> tuple[dict, dict]:
        """Wait for every started call: ``({host: result}, {host: error})``."""
        out, errors = {}, {}
        for h, f in futures.items():
            try:
                out[h] = f()
            except FedcreditError as exc:
                errors[h] = exc
        return out, errors

    @classmethod
    def _wait_all(cls, futures: dict) -> dict:
        """Wait for every started call; raise the first error (after all have finished)."""
        out, errors = cls._gather(futures)
        if errors:
            raise next(iter(errors.values()))
        return out

    def _check_reply(self, part, host: str, r: Contribution, n: int) -> None:
        if r.kind != part.kind.value or r.n != n:
            raise ProtocolError(f"{host!r} answered a {r.kind!r} contribution for {r.n} rows; expected "
                                f"{part.kind.value!r} for {n}")

    def _score_trees(self, part, model_id: str, rid: str, blob: bytes, auth: dict, X, reasons: bool = False):
        """Path-only SecureBoost scoring: round trips (<= max depth) of path queries.

        Returns ``(log-odds, round trips, contributions, reason names)`` (the
        last two None without ``reasons``). Reasons are Saabas contributions
        from the leaf each (tree, row) reached, which the walk knows anyway
        (:class:`~fedcredit.models.explain.TreeExplainer`); host features are
        named by the texts the hosts publish, sent in their Contribute replies.

        Round 1 is the Contribute every host receives (authorization, audit,
        the id digests) with the queries at the first host split of each
        (tree, row); later rounds go only to hosts with pending queries, in
        parallel. A host whose Contribute or Decide was not ``final`` but that
        is not asked again gets a closing Decide that nobody waits for.
        """
        forest = part.extra.get("forest")
        if forest is None:
            forest = part.extra["forest"] = sguest.Forest(part.model)
        walk = sguest.TreeWalk(forest, X)
        qs = walk.queries()
        final = {h: walk.final_for(h) for h in part.hosts}
        clients = {h: self._client(h) for h in part.hosts}
        opened: set = set()  # hosts holding this request open
        trips = 1
        try:
            replies, errors = self._gather({h: clients[h].contribute_async(model_id, rid, blob, auth, part.hosts,
                                                                           qs.get(h), final[h], reasons=reasons)
                                            for h in part.hosts})
            opened |= {h for h in replies if not final[h]}
            if errors:
                raise next(iter(errors.values()))
            for h, r in replies.items():
                self._check_reply(part, h, r, walk.n)
                asked = len(qs[h]) if h in qs else 0
                if r.n_decisions != asked:
                    raise ProtocolError(f"{h!r} answered {r.n_decisions} path queries; it was asked {asked}")
                if h in qs:
                    walk.apply(h, r.decisions)
            host_texts = {h: self._tree_texts(h, r) for h, r in replies.items()} if reasons else {}
            walk.advance()
            while True:
                qs = walk.queries()
                if not qs:
                    break
                if trips >= spec.MAX_ROUNDS:
                    raise ProtocolError(f"model {model_id!r} needs more than {spec.MAX_ROUNDS} rounds")
                final = {h: walk.final_for(h) for h in qs}
                answers, errors = self._gather({h: clients[h].decide_async(model_id, rid, q, final[h])
                                                for h, q in qs.items()})
                opened -= set(errors)  # a host that refused a round has closed the request itself
                if errors:
                    raise next(iter(errors.values()))
                for h, bits in answers.items():
                    walk.apply(h, bits)
                    if final[h]:
                        opened.discard(h)
                walk.advance()
                trips += 1
        finally:
            for h in opened:  # not waited for: the host drops the request's rows now instead of after its TTL
                try:
                    clients[h].close_async(model_id, rid)
                except Exception:  # noqa: BLE001 - best effort; the host's TTL covers it
                    log.debug("closing request %s on %s failed", rid, h, exc_info=True)
        z = walk.scores(raw=True)
        if not reasons:
            return z, trips, None, None
        ex = part.extra.get("explainer")
        if ex is None:
            ex = part.extra["explainer"] = explain.TreeExplainer(part.model)
        own = [self._published_text(f) or f for f in part.model.feature_names]  # the bank's own texts, if any
        return z, trips, ex.contributions(walk.pos), ex.names(own, host_texts)

    @staticmethod
    def _tree_texts(host: str, r: Contribution) -> dict:
        """``{feature index: text}`` a host published for its SecureBoost features."""
        out = {}
        for f, t in zip(r.reason_features, r.reason_texts):
            if not f.isdigit() or len(f) > 6:
                raise ProtocolError(f"{host!r} sent a malformed reason text key")
            if t:
                out[int(f)] = t
        return out

    def _combine_lr(self, part, X, replies: dict[str, Contribution], n: int, reasons: bool = False):
        """Log-odds (own partial plus the unmasked sum of the hosts'), and with ``reasons`` the contributions.

        Reason columns: the guest's own features; the features of every host
        whose policy reveals them (``reveal_reasons``); and one aggregate of
        the other hosts, ``platform data (<hosts>)``, whose value the guest
        can compute only as a sum: the hosts' summed partial score minus their
        summed references (both unmasked only in the sum) minus what the
        revealing hosts sent. With two or more hosts in it, no single host's
        partial is learnt; a single host in it is learnt, as it is from the
        score itself.
        """
        masked, refs = [], []
        for h, r in replies.items():
            self._check_reply(part, h, r, n)
            if r.masked is None or len(r.masked) != n:
                raise ProtocolError(f"{h!r} sent no or a wrong-sized masked partial score")
            masked.append(r.masked)
            if reasons:
                if r.masked_reference is None:
                    raise ProtocolError(f"{h!r} sent no reference for the reasons")
                refs.append(r.masked_reference)
        own = shost.lr_partial(part.model, X)
        hosts_sum = spec.decode_sum(masked) if masked else np.zeros(n)
        z = own + hosts_sum
        if not reasons:
            return z, None, None
        d = part.model
        Z = quantize(shost.lr_design(d, X))
        cols = [explain.lr_contributions(d, Z)]
        names = [self._published_text(f) or f for f in d["features"]]
        agg = hosts_sum - (spec.decode_sum(refs) if refs else 0.0)
        quiet = []
        for h in part.hosts:
            r = replies[h]
            if r.contributions is None:
                quiet.append(h)
                continue
            cols.append(r.contributions)
            names += [t or f for f, t in zip(r.reason_features, r.reason_texts)]
            agg = agg - r.contributions.sum(axis=1)
        if quiet:
            who = "all hosts" if len(quiet) == len(part.hosts) and len(quiet) > 1 else ", ".join(quiet)
            cols.append(np.asarray(agg, dtype=np.float64)[:, None])
            names.append(f"platform data ({who})")
        return z, np.hstack(cols), names

    # ================================================================== host
    def contribute(self, caller: str, model_id: str, request_id: str, digests_blob: bytes, auth: dict, hosts,
                   queries=None, final: bool = True, reasons: bool = False):
        """Answer the guest's request: authorization, rate limit, audit, masked part or first path queries.

        ``queries`` (``(split_ids, counts, rows)`` arrays) and ``final`` are
        SecureBoost's: with ``final`` false the request stays open (its rows
        kept, bounded and expiring) for further rounds through :meth:`decide`.
        """
        self._require_peer(caller)
        spec.check_model_id(model_id)
        if not isinstance(digests_blob, bytes) or len(digests_blob) % spec.DIGEST_BYTES:
            raise ProtocolError(f"id digests must be a multiple of {spec.DIGEST_BYTES} bytes")
        n_ids = len(digests_blob) // spec.DIGEST_BYTES
        found = 0
        try:
            # Everything that can refuse the request comes before anything proportional to it is done or
            # logged: a refusal's record holds its size and digest (self._refused), never the ids.
            m = self.registry.get(model_id)
            part = m.part
            if part.role != "host" or part.guest != caller:
                raise PolicyError(f"{caller!r} is not the guest of model {model_id!r} on {self.name!r}")
            check_authorization(self.policy, self.proposers, caller, auth, n_ids)
            if self.name not in hosts or (part.kind == Kind.HETERO_LR and set(hosts) != set(part.hosts)):
                # LR: every host of the model must take part, or the masks would not hide single partial scores
                raise PolicyError(f"the request names hosts {sorted(hosts)[:8]}, which does not match model "
                                  f"{model_id!r}")
            self.limiter.take(caller, n_ids)
            self.replay.add(caller, model_id, request_id)  # committed before answering: survives a restart
            transcript = spec.request_transcript(model_id, request_id, hosts, digests_blob)
            digests = spec.split_digests(digests_blob)
            X, found = m.rows_for_digests(digests)
            if part.kind == Kind.SECUREBOOST:
                if isinstance(queries, Exception):  # malformed on the wire (see transport.scoring)
                    raise queries
                q = spec.TreeQueries(*queries) if queries is not None else spec.TreeQueries.empty()
                session = shost.TreeSession(self._split_table(m), X, requester=caller, model_id=model_id)
                bits = session.answer(q)
                if not final:
                    self.sessions.open((caller, request_id), session)
                reply = Contribution(part.kind.value, n_ids, decisions=bits, n_decisions=len(q))
                if reasons:  # texts of this host's features by index (the guest knows the index of each split)
                    pub = [(str(k), t) for k, f in enumerate(part.model.feature_names)
                           if (t := self._published_text(f))]
                    reply.reason_features, reply.reason_texts = [k for k, _ in pub], [t for _, t in pub]
                extra = {"path_queries": len(q)}
            else:
                others = [h for h in hosts if h != self.name]
                secrets_ = {h: self._pair_secret_with(h, model_id) for h in others}
                # the masks are keyed by the request exactly as received (ids in order, host set): they
                # cancel only against co-hosts that received the same request (issue 23, item 2)
                u = shost.lr_contribution(part.model, X, me=self.name, transcript=transcript, pair_secrets=secrets_)
                reply = Contribution(part.kind.value, n_ids, masked=u)
                extra = {}
                if reasons:
                    # the reference is masked like the partial scores: the guest learns only the hosts' sum
                    reply.masked_reference = shost.lr_masked_reference(part.model, n_ids, me=self.name,
                                                                       transcript=transcript, pair_secrets=secrets_)
                    if self.policy.reveal_reasons:  # this host's policy opts in: per-applicant, per-feature
                        reply.contributions = explain.lr_contributions(part.model, quantize(shost.lr_design(part.model, X)))
                        reply.reason_features = list(part.model["features"])
                        reply.reason_texts = [self._published_text(f) for f in part.model["features"]]
                        extra = {"revealed_reasons": True}
        except FedcreditError as exc:
            self._refused("score.contribute", exc, requester=caller, model_id=model_id, request_id=request_id,
                          n_ids=n_ids, request_sha256=self._request_sha(model_id, request_id, hosts, digests_blob),
                          consent_id=str(auth.get("consent_id", ""))[:128], purpose=str(auth.get("purpose", ""))[:64])
            raise
        self._log_request("score.contribute", requester=caller, model_id=model_id, digests=digests, auth=auth,
                          decision="answered", request_id=request_id, found=found, request_sha256=transcript.hex(),
                          **extra)
        return reply

    def _published_text(self, feature: str) -> str:
        """The reason text this party's ``[policy] reasons`` gives a feature (``col`` or ``party.col``), or ""."""
        return self.reason_texts.get(feature) or self.reason_texts.get(feature.split(".", 1)[-1]) or ""

    @staticmethod
    def _request_sha(model_id: str, request_id, hosts, digests_blob: bytes) -> str:
        """Hex :func:`~fedcredit.protocols.scoring.spec.request_transcript` (the bank records the same value)."""
        return spec.request_transcript(model_id, str(request_id)[:40], [str(h)[:64] for h in hosts][:64],
                                       digests_blob).hex()

    def _split_table(self, m) -> shost.SplitTable:
        table = m.part.extra.get("split_table")
        if table is None:
            table = m.part.extra["split_table"] = shost.SplitTable(m.part.model, m.feature_index)
        return table

    def decide(self, caller: str, model_id: str, request_id: str, queries, final: bool) -> bytes:
        """A further round of path queries of an open SecureBoost request of ``caller``: packed answers.

        Refused (ProtocolError, audited as ``score.decide``) for an unknown,
        finished or expired request, another model, or any invalid query; the
        request is then closed. ``final`` closes it after answering.
        """
        self._require_peer(caller)
        spec.check_model_id(model_id)
        key = (caller, str(request_id))
        try:
            session = self.sessions.get(key)
            if session.model_id != model_id:
                self.sessions.close(key)
                raise ProtocolError(f"request {str(request_id)[:40]!r} is for model {session.model_id!r}, "
                                    f"not {model_id!r}")
            try:
                if isinstance(queries, Exception):  # malformed on the wire (see transport.scoring)
                    raise queries
                bits = session.answer(spec.TreeQueries(*queries))
            except FedcreditError:
                self.sessions.close(key)
                raise
        except FedcreditError as exc:
            self._refused("score.decide", exc, requester=caller, model_id=model_id, request_id=request_id)
            raise
        if final:
            self.sessions.close(key)
        return bits

    def _pair_secret_with(self, peer: str, model_id: str) -> bytes:
        """The mask secret this host shares with ``peer`` for ``model_id`` (the smaller name creates it)."""
        if self.name < peer:
            return derive_key(self._secret, "pair-secret", model_id, peer)
        key = (model_id, peer)
        with self._lock:
            s = self._pair_secrets.get(key)
        if s is None:
            s = ScoringClient(self.transport.grpc_channel(peer), peer, timeout=self.timeout).pair_secret(model_id)
            if len(s) != 32:
                raise ProtocolError(f"{peer!r} sent a malformed mask secret")
            with self._lock:
                self._pair_secrets[key] = s
        return s

    def pair_secret(self, caller: str, model_id: str) -> bytes:
        """Hand a co-host of an LR model (with a larger name) our pairwise mask secret."""
        self._require_peer(caller)
        m = self.registry.get(spec.check_model_id(model_id))
        part = m.part
        if part.kind != Kind.HETERO_LR or part.role != "host" or caller not in part.hosts or caller <= self.name:
            raise PolicyError(f"{caller!r} may not have a mask secret of model {model_id!r}")
        self.audit.append("score.pair_secret", peer=caller, model=model_id)
        return derive_key(self._secret, "pair-secret", model_id, caller)

    # ================================================================== governance
    def exchange_heads(self, caller: str, seq: int, hash_: str) -> tuple[int, str]:
        self._require_peer(caller)
        self.heads.record(caller, seq, hash_)
        return self.audit.head()

    def held_heads(self, caller: str) -> list[tuple[int, str]]:
        self._require_peer(caller)
        return self.heads.held_for(caller)

    def _revoked(self) -> dict:
        try:
            return json.loads(self._revoked_path.read_text()) if self._revoked_path.exists() else {}
        except (OSError, ValueError):
            return {}

    def _apply_revocations(self) -> None:
        revoked = self._revoked()
        peers = {p: a for p, a in self.transport.peers.items() if p not in revoked}
        if len(peers) != len(self.transport.peers):
            self.transport.set_peers(peers)

    def revoke(self, caller: str, peer: str, reason: str = "") -> str:
        """Refuse ``peer`` from its next message, scoring request or job on (persisted across restarts)."""
        self._require_self(caller, "revoke peers")
        if peer not in self.transport.peers and peer not in self.config.peers:
            raise ConfigError(f"{peer!r} is not a peer of {self.name!r}")
        revoked = self._revoked()
        revoked[peer] = {"time": time.time(), "reason": reason}
        tmp = self._revoked_path.with_name("revoked.json.tmp")
        tmp.write_text(json.dumps(revoked, sort_keys=True))
        os.replace(tmp, self._revoked_path)
        self._apply_revocations()
        with self._lock:
            self._pair_secrets = {k: v for k, v in self._pair_secrets.items() if k[1] != peer}
        self.audit.append("peer.revoked", peer=peer, reason=reason, by=caller)
        log.warning("%s revoked peer %s: %s", self.name, peer, reason)
        return f"{peer} revoked on {self.name}; peers now: {', '.join(sorted(self.transport.peers)) or 'none'}"

    def admit(self, caller: str, peer: str, reason: str = "") -> str:
        """Re-admit a revoked ``peer`` at once (no restart): its next message is accepted again. Audited.

        The peer must still be in ``[peers]`` of the config file (re-read now);
        a peer removed from there is added back by editing the file and
        ``fedcredit party reload``.
        """
        self._require_self(caller, "re-admit peers")
        revoked = self._revoked()
        if peer not in revoked:
            raise ConfigError(f"{peer!r} is not revoked on {self.name!r} (revoked: {', '.join(sorted(revoked)) or 'none'})")
        cfg = load_party_config(self.config.path, check_files=False)
        if peer not in cfg.peers:
            raise ConfigError(f"{peer!r} is not in [peers] of {self.config.path}; add it there, then run "
                              f"'fedcredit party reload' (and admit it if it stays revoked)")
        del revoked[peer]
        tmp = self._revoked_path.with_name("revoked.json.tmp")
        tmp.write_text(json.dumps(revoked, sort_keys=True))
        os.replace(tmp, self._revoked_path)
        peers = dict(self.transport.peers)
        peers[peer] = cfg.peers[peer]
        self.transport.set_peers(peers)
        self.audit.append("peer.admitted", peer=peer, reason=reason, by=caller)
        log.warning("%s re-admitted peer %s: %s", self.name, peer, reason)
        return f"{peer} re-admitted on {self.name}; peers now: {', '.join(sorted(self.transport.peers))}"

    def reload(self, caller: str) -> str:
        """Re-read the config file: apply its ``[peers]`` (minus revoked ones) and ``[policy.scoring]``."""
        self._require_self(caller, "reload the configuration")
        cfg = load_party_config(self.config.path, check_files=False)
        if cfg.name != self.name:
            raise ConfigError(f"{self.config.path}: [party].name changed to {cfg.name!r}; restart the party instead")
        before = set(self.transport.peers)
        revoked = self._revoked()
        self.transport.set_peers({p: a for p, a in cfg.peers.items() if p not in revoked})
        self.policy = cfg.policy.scoring
        self.proposers = tuple(cfg.policy.proposers)
        self.reason_texts = dict(cfg.policy.reasons)
        self.limiter = RateLimiter(self.policy.max_requests_per_minute, self.policy.max_ids_per_minute)
        after = set(self.transport.peers)
        if self.on_reload is not None:
            self.on_reload(cfg)
        self.audit.append("config.reloaded", path=str(self.config.path), added=sorted(after - before),
                          removed=sorted(before - after))
        extra = [hook(cfg) for hook in self.reload_hooks]
        return (f"reloaded {self.config.path}: peers {', '.join(sorted(after)) or 'none'}"
                + (f"; removed {', '.join(sorted(before - after))}" if before - after else "")
                + "".join(f"; {e}" for e in extra if e))

    # -- export ---------------------------------------------------------------------
    def _approvals(self) -> dict:
        try:
            return json.loads(self._approvals_path.read_text()) if self._approvals_path.exists() else {}
        except (OSError, ValueError):
            return {}

    def approve_export(self, caller: str, model_id: str, requester: str, note: str = "") -> str:
        """Record this party's operator's approval to release its part of ``model_id`` to ``requester``."""
        self._require_self(caller, "approve a model export")
        part = self.registry.get(spec.check_model_id(model_id)).part
        if requester not in (part.guest, self.name):
            raise ConfigError(f"{requester!r} is not the guest of model {model_id!r} ({part.guest!r})")
        approvals = self._approvals()
        approvals.setdefault(model_id, [])
        if requester not in approvals[model_id]:
            approvals[model_id].append(requester)
        tmp = self._approvals_path.with_name("export_approvals.json.tmp")
        tmp.write_text(json.dumps(approvals, sort_keys=True))
        os.replace(tmp, self._approvals_path)
        rec = self.audit.append("export.approved", model=model_id, requester=requester, note=note[:500], by=caller)
        return f"export of {self.name}'s part of {model_id} to {requester} approved (audit #{rec['seq']})"

    def _approved(self, model_id: str, requester: str) -> bool:
        return requester in self._approvals().get(model_id, [])

    def export_part(self, caller: str, model_id: str) -> str:
        """This host's plaintext part, to the model's guest, only after this party's approval."""
        self._require_peer(caller)
        part = self.registry.get(spec.check_model_id(model_id)).part
        if part.role != "host" or part.guest != caller:
            raise PolicyError(f"{caller!r} is not the guest of model {model_id!r} on {self.name!r}")
        if not self._approved(model_id, caller):
            exc = PolicyError(f"{self.name!r} has not approved exporting its part of {model_id!r} to {caller!r} "
                              f"(its operator runs: fedcredit model approve-export)")
            if self.refusals.take(caller) is not None:  # refusals of a peer are logged at a bounded rate
                self.audit.append("export.refused", model=model_id, requester=caller, reason="no approval")
            raise exc
        text = part.path.read_text(encoding="utf-8")
        self.audit.append("export.released", model=model_id, requester=caller,
                          part_sha256=hashlib.sha256(text.encode()).hexdigest())
        return text

    def export(self, caller: str, model_id: str, note: str = "") -> str:
        """The merged plaintext model (guest only), after every host's recorded approval; records ours."""
        self._require_self(caller, "export models")
        part = self.registry.get(spec.check_model_id(model_id)).part
        if part.role != "guest":
            raise PolicyError(f"{self.name!r} is not the guest of model {model_id!r}")
        if not self._approved(model_id, self.name):
            self.approve_export(caller, model_id, self.name, note or "export requested by the guest's operator")
        parts = {}
        for h in part.hosts:
            text = GovernanceClient(self.transport.grpc_channel(h), h, timeout=self.timeout).export_part(model_id)
            try:
                parts[h] = json.loads(text)
            except ValueError:
                raise ProtocolError(f"{h!r} sent a model part that is not JSON") from None
        if part.kind == Kind.SECUREBOOST:
            merged = merge_secureboost(part.model, parts)
        else:
            merged = merge_lr(load_lr_part(part.path), parts)
        merged["model_id"] = model_id
        scale = self._scale(model_id)
        if scale:  # the job's scorecard step: the scale a PMML Scorecard export uses
            merged["scale"] = scale
        out = json.dumps(merged, sort_keys=True)
        self.audit.append("export.done", model=model_id, hosts=list(part.hosts),
                          model_sha256=hashlib.sha256(out.encode()).hexdigest())
        return out
