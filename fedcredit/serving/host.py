"""Federated scoring as a host of the model (a party holding some of its features, asked by the guest).

:meth:`HostScoring.contribute` checks the requester and the authorization
against ``[policy.scoring]`` and the rate limits, refuses with a reason
(PolicyError -> PERMISSION_DENIED) or computes its masked LR part / answers
the first path queries; :meth:`HostScoring.decide` answers further rounds of
an open request after validating them (unknown request, foreign split, row out
of range, two splits of one tree per row and round -> ProtocolError). Open
requests are bounded and expire
(:class:`~fedcredit.protocols.scoring.host.SessionTable`). A host checks a
request (peer, guest of the model, authorization, host set, rate limit,
replay) before it writes anything proportional to it: a refusal's record
carries the number of ids and the request's digest, never the ids.

A mixin of :class:`~fedcredit.serving.service.ScoringService`, which holds
the state it uses (registry, policy, limiter, replay cache, sessions, secret).
"""

from __future__ import annotations

from ..crypto.secagg import derive_key
from ..errors import FedcreditError, PolicyError, ProtocolError
from ..models import explain
from ..models.logistic import quantize
from ..protocols.scoring import host as shost
from ..protocols.scoring import spec
from ..protocols.scoring.spec import Kind
from ..transport.scoring import Contribution, ScoringClient
from .authz import check_authorization

__all__ = ["HostScoring"]


class HostScoring:
    """A host's side of scoring: :meth:`contribute`, :meth:`decide`, :meth:`pair_secret`."""

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
