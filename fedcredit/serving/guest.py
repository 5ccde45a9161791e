"""Federated scoring as the model's guest (the label holder, whose own operator asks for scores).

:meth:`GuestScoring.score_full` sends one ``Contribute`` to every host of the
model in parallel over the cached mTLS channels (no per-request handshake)
and combines. Hetero LR: that is the only round trip; the guest adds its own
partial score to the hosts' masked partials, whose masks cancel only in the
sum. SecureBoost: path-only (see ``protocols/scoring/spec.py``): the
Contribute carries the first round of path queries and further rounds
(``Decide``, at most ``max_depth`` round trips in all) go only to hosts with
pending queries, so the guest learns only the host decisions on each row's
path.

A mixin of :class:`~fedcredit.serving.service.ScoringService`, which holds
the state it uses (registry, policy, transport, audit).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..errors import ConfigError, DataError, FedcreditError, PolicyError, ProtocolError
from ..models import explain
from ..models.logistic import quantize, sigmoid
from ..protocols.scoring import guest as sguest
from ..protocols.scoring import host as shost
from ..protocols.scoring import spec
from ..protocols.scoring.spec import Kind
from ..transport.scoring import Contribution, Scored, ScoringClient
from .authz import check_authorization

__all__ = ["GuestScoring", "MAX_REASONS"]

log = logging.getLogger("fedcredit.serving")

#: Most reasons per applicant a request may ask for.
MAX_REASONS = 32


class GuestScoring:
    """The guest's side of scoring: :meth:`score`, :meth:`score_full`, :meth:`held_ids` (see the module docstring)."""

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
            n = len(ids)
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
