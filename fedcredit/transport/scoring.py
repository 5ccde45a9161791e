"""Scoring and Governance services on the wire (``protos/fedcredit/v1/scoring.proto``).

The serving side (:mod:`fedcredit.serving`) implements :class:`ScoringHandler`
in plain Python; this module converts between those calls and the generated
protobuf code, and turns fedcredit errors into gRPC status codes and back
(the same table as the Control service, :data:`~fedcredit.transport.control.STATUS_OF`),
so a refusal reads the same on both sides: a :class:`~fedcredit.errors.PolicyError`
becomes PERMISSION_DENIED with its reason and comes back as a PolicyError.

Arrays travel as little-endian fixed-width bytes (float64 scores and
features, uint64 masked partial scores; SecureBoost path queries as int64
split ids, uint32 counts and uint32 row positions; answers as packed bits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import numpy as np

from .._proto import scoring_pb2 as pb
from .._proto import scoring_pb2_grpc as pb_grpc
from ..errors import ProtocolError
from .control import STATUS_OF, error_from_rpc
from .grpc import peer_identity

__all__ = ["Scored", "ScoringHandler", "add_scoring_servicers", "ScoringClient", "GovernanceClient", "Contribution",
           "queries_to_proto", "queries_from_proto"]

log = logging.getLogger("fedcredit.scoring")

#: Calls nobody waits for (closing Decides), kept referenced until they finish.
_in_flight: set = set()


class ScoringHandler(Protocol):
    """What the party implements; ``caller`` is the certificate's party name."""

    name: str

    def score_full(self, caller: str, model_id: str, ids: list[str], auth: dict, guest_X, feature_names: list[str],
                   reasons: int = 0, unknown: str = "score-as-missing") -> "Scored": ...
    def held_ids(self, caller: str, model_id: str, ids: list[str]) -> np.ndarray: ...
    def contribute(self, caller: str, model_id: str, request_id: str, digests: bytes, auth: dict,
                   hosts: list[str], queries: tuple, final: bool, reasons: bool = False) -> "Contribution": ...
    def decide(self, caller: str, model_id: str, request_id: str, queries: tuple, final: bool) -> bytes: ...
    # ``queries``: ``(split_ids, counts, rows)`` arrays, or the ProtocolError that parsing them raised
    # (the handler raises it in its own error handling, so the refusal is audited)
    def pair_secret(self, caller: str, model_id: str) -> bytes: ...
    def exchange_heads(self, caller: str, seq: int, hash_: str) -> tuple[int, str]: ...
    def held_heads(self, caller: str) -> list[tuple[int, str]]: ...
    def revoke(self, caller: str, peer: str, reason: str) -> str: ...
    def admit(self, caller: str, peer: str, reason: str) -> str: ...
    def reload(self, caller: str) -> str: ...
    def approve_export(self, caller: str, model_id: str, requester: str, note: str) -> str: ...
    def export(self, caller: str, model_id: str, note: str) -> str: ...
    def export_part(self, caller: str, model_id: str) -> str: ...


@dataclass
class Scored:
    """The guest's answer to its operator.

    Attributes
    ----------
    scores, log_odds : ndarray of float64, shape (n,)
        Probability of default and its log-odds.
    request_id : str
    k : int
        Reasons per applicant (0: none asked).
    reason_names : list of str
    reason_index : ndarray of int64, shape (n, k)
        Index into ``reason_names`` of each applicant's reasons, largest first (-1: no further reason).
    reason_values : ndarray of float64, shape (n, k)
        Log-odds of default each reason adds beyond its reference.
    scale : dict or None
        ``pdo``, ``base_score``, ``base_odds`` of the model's scorecard step, if its job has one.
    held : ndarray of bool, shape (n,), or None
        Which applicants the guest holds in the model's table (when asked for, or when ``unknown="refuse"``).
    """

    scores: np.ndarray
    log_odds: np.ndarray | None
    request_id: str
    k: int = 0
    reason_names: list = field(default_factory=list)
    reason_index: np.ndarray | None = None
    reason_values: np.ndarray | None = None
    scale: dict | None = None
    held: np.ndarray | None = None


class Contribution:
    """A host's reply: ``kind``; hetero_lr: ``masked`` (uint64); secureboost: packed ``decisions`` (``n_decisions`` bits)."""

    __slots__ = ("kind", "masked", "decisions", "n_decisions", "n", "masked_reference", "contributions",
                 "reason_features", "reason_texts")

    def __init__(self, kind: str, n: int, masked=None, decisions: bytes = b"", n_decisions: int = 0, *,
                 masked_reference=None, contributions=None, reason_features=(), reason_texts=()):
        self.kind, self.n, self.masked, self.decisions, self.n_decisions = kind, n, masked, decisions, n_decisions
        self.masked_reference = masked_reference  # hetero_lr with reasons: uint64 array of length 1
        self.contributions = contributions  # hetero_lr with reveal_reasons: float64 (n, len(reason_features))
        self.reason_features, self.reason_texts = list(reason_features), list(reason_texts)

    def to_proto(self) -> pb.ContributeReply:
        return pb.ContributeReply(
            kind=self.kind, n=self.n,
            masked=b"" if self.masked is None else np.asarray(self.masked, dtype="<u8").tobytes(),
            decisions=self.decisions, n_decisions=self.n_decisions,
            masked_reference=b"" if self.masked_reference is None
            else np.asarray(self.masked_reference, dtype="<u8").tobytes(),
            contributions=b"" if self.contributions is None
            else np.ascontiguousarray(self.contributions, dtype="<f8").tobytes(),
            reason_features=self.reason_features, reason_texts=self.reason_texts,
        )

    @classmethod
    def from_proto(cls, m: pb.ContributeReply, peer: str) -> "Contribution":
        nf = len(m.reason_features)
        if (len(m.masked) % 8 or len(m.masked_reference) not in (0, 8) or len(m.reason_texts) != nf
                or (m.contributions and len(m.contributions) != 8 * nf * m.n)):
            raise ProtocolError(f"{peer!r} sent a malformed contribution (ragged arrays)")
        contrib = np.frombuffer(m.contributions, dtype="<f8").reshape(m.n, nf) if m.contributions else None
        if contrib is not None and not np.all(np.isfinite(contrib)):
            raise ProtocolError(f"{peer!r} sent non-finite reason contributions")
        return cls(m.kind, m.n, masked=np.frombuffer(m.masked, dtype="<u8") if m.masked else None,
                   decisions=m.decisions, n_decisions=m.n_decisions,
                   masked_reference=np.frombuffer(m.masked_reference, dtype="<u8") if m.masked_reference else None,
                   contributions=contrib, reason_features=[str(f)[:200] for f in m.reason_features],
                   reason_texts=[str(t)[:200] for t in m.reason_texts])


def queries_to_proto(q) -> pb.TreeQueries:
    """Path queries (anything with ``split_ids``, ``counts`` and ``rows`` arrays, e.g. ``TreeQueries``) → proto."""
    if q is None:
        return pb.TreeQueries()
    return pb.TreeQueries(split_ids=np.asarray(q.split_ids, dtype="<i8").tobytes(),
                          counts=np.asarray(q.counts, dtype="<u4").tobytes(),
                          rows=np.asarray(q.rows, dtype="<u4").tobytes())


def queries_from_proto(m: pb.TreeQueries, peer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(split_ids int64, counts uint32, rows uint32)`` of a ``TreeQueries`` message (ProtocolError if ragged)."""
    if len(m.split_ids) % 8 or len(m.counts) % 4 or len(m.rows) % 4:
        raise ProtocolError(f"{peer!r} sent malformed path queries (ragged arrays)")
    return (np.frombuffer(m.split_ids, dtype="<i8").astype(np.int64),
            np.frombuffer(m.counts, dtype="<u4").astype(np.uint32),
            np.frombuffer(m.rows, dtype="<u4").astype(np.uint32))


def _parse_queries(m: pb.TreeQueries, peer: str):
    """The arrays, or the ProtocolError for malformed ones: the handler raises it, so the refusal is audited."""
    try:
        return queries_from_proto(m, peer)
    except ProtocolError as exc:
        return exc


def _peer_error(exc: grpc.RpcError, peer: str, what: str):
    """:func:`error_from_rpc`, except that a peer rejecting a scoring message as malformed is a ProtocolError."""
    err = error_from_rpc(exc, peer, what)
    if hasattr(exc, "code") and exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return ProtocolError(str(err))
    return err


def _auth(m: pb.Authorization) -> dict:
    return {"consent_id": m.consent_id, "purpose": m.purpose}


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            context.abort(code, str(exc)[:4000])
    log.exception("internal error in a scoring call")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"[:4000])


def _guard(fn):
    def wrapper(self, request, context):
        caller = peer_identity(context)
        try:
            return fn(self, caller, request)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status; the party keeps serving
            _abort(context, exc)

    wrapper.__name__ = fn.__name__
    return wrapper


class _ScoringServicer(pb_grpc.ScoringServicer):
    def __init__(self, handler: ScoringHandler):
        self.h = handler

    @_guard
    def Score(self, caller, r):
        X = None
        if r.guest_features:
            k = len(r.feature_names)
            if k == 0 or len(r.guest_features) != 8 * k * len(r.ids):
                raise ProtocolError("guest_features must hold len(ids) x len(feature_names) float64 values")
            X = np.frombuffer(r.guest_features, dtype="<f8").reshape(len(r.ids), k)
        unknown = r.unknown or "score-as-missing"
        if unknown not in ("score-as-missing", "flag", "refuse"):
            raise ProtocolError(f"unknown must be 'score-as-missing', 'flag' or 'refuse', got {unknown[:20]!r}")
        res = self.h.score_full(caller, r.model_id, list(r.ids), _auth(r.auth), X, list(r.feature_names),
                                reasons=int(r.reasons), unknown=unknown)
        reply = pb.ScoreReply(scores=np.asarray(res.scores, dtype="<f8").tobytes(), request_id=res.request_id,
                              n=len(res.scores), log_odds=np.asarray(res.log_odds, dtype="<f8").tobytes(),
                              k=res.k, reason_names=res.reason_names)
        if res.k:
            reply.reason_index = np.asarray(res.reason_index, dtype="<i4").tobytes()
            reply.reason_values = np.asarray(res.reason_values, dtype="<f8").tobytes()
        if res.scale:
            reply.scale.CopyFrom(pb.ScoreScale(**res.scale))
        if r.unknown:  # asked for: the guest's own knowledge of which applicants it holds
            held = res.held if res.held is not None else self.h.held_ids(caller, r.model_id, list(r.ids))
            reply.guest_held = np.packbits(np.asarray(held, dtype=bool)).tobytes()
        return reply

    @_guard
    def Contribute(self, caller, r):
        return self.h.contribute(caller, r.model_id, r.request_id, r.id_digests, _auth(r.auth), list(r.hosts),
                                 _parse_queries(r.queries, caller), bool(r.final), reasons=bool(r.reasons)).to_proto()

    @_guard
    def Decide(self, caller, r):
        q = _parse_queries(r.queries, caller)
        bits = self.h.decide(caller, r.model_id, r.request_id, q, bool(r.final))
        return pb.DecideReply(decisions=bits, n_decisions=len(q[2]))

    @_guard
    def PairSecret(self, caller, r):
        return pb.PairSecretReply(secret=self.h.pair_secret(caller, r.model_id))


class _GovernanceServicer(pb_grpc.GovernanceServicer):
    def __init__(self, handler: ScoringHandler):
        self.h = handler

    @_guard
    def ExchangeHeads(self, caller, r):
        seq, h = self.h.exchange_heads(caller, int(r.seq), r.hash)
        return pb.AuditHead(seq=seq, hash=h, party=self.h.name)

    @_guard
    def HeldHeads(self, caller, r):
        return pb.HeldHeadsReply(heads=[pb.AuditHead(seq=s, hash=h, party=caller) for s, h in self.h.held_heads(caller)])

    @_guard
    def Revoke(self, caller, r):
        return pb.AdminReply(ok=True, message=self.h.revoke(caller, r.peer, r.reason))

    @_guard
    def Admit(self, caller, r):
        return pb.AdminReply(ok=True, message=self.h.admit(caller, r.peer, r.reason))

    @_guard
    def Reload(self, caller, r):
        return pb.AdminReply(ok=True, message=self.h.reload(caller))

    @_guard
    def ApproveExport(self, caller, r):
        return pb.AdminReply(ok=True, message=self.h.approve_export(caller, r.model_id, r.requester, r.note))

    @_guard
    def Export(self, caller, r):
        return pb.ExportReply(model_json=self.h.export(caller, r.model_id, r.note))

    @_guard
    def ExportPart(self, caller, r):
        return pb.ExportPartReply(part_json=self.h.export_part(caller, r.model_id))


def add_scoring_servicers(server: grpc.Server, handler: ScoringHandler) -> None:
    """Add the Scoring and Governance services, backed by ``handler``, to ``server`` (before it starts)."""
    pb_grpc.add_ScoringServicer_to_server(_ScoringServicer(handler), server)
    pb_grpc.add_GovernanceServicer_to_server(_GovernanceServicer(handler), server)


# --------------------------------------------------------------------------- clients

class ScoringClient:
    """Calls the Scoring service of party ``peer`` over ``channel`` (an mTLS channel, reused across calls).

    Every method raises a fedcredit error (PolicyError for a refusal, PeerError
    when unreachable) instead of ``grpc.RpcError``.
    """

    def __init__(self, channel: grpc.Channel, peer: str, *, timeout: float = 30.0):
        self.peer = peer
        self.timeout = timeout
        self._s = pb_grpc.ScoringStub(channel)

    def score(self, model_id: str, ids, *, consent_id: str, purpose: str, guest_X=None, feature_names=(),
              timeout: float | None = None, unknown: str | None = None):
        """Scores of ``ids`` (this party's own service: its operator asks, it is the model's guest).

        Returns ``(scores, request id)``; with ``unknown`` (``"flag"``, ``"refuse"`` or
        ``"score-as-missing"``) ``(scores, request id, held)``, ``held`` a bool per id: the
        guest holds it (``"refuse"``: the others are not sent to any host and score NaN).
        """
        res = self.score_full(model_id, ids, consent_id=consent_id, purpose=purpose, guest_X=guest_X,
                              feature_names=feature_names, timeout=timeout, unknown=unknown)
        return (res.scores, res.request_id) if unknown is None else (res.scores, res.request_id, res.held)

    def score_full(self, model_id: str, ids, *, consent_id: str, purpose: str, guest_X=None, feature_names=(),
                   reasons: int = 0, timeout: float | None = None, unknown: str | None = None):
        """:class:`Scored`: probabilities, log-odds, reasons, the model's scale (and ``held``, with ``unknown``)."""
        req = pb.ScoreRequest(model_id=model_id, ids=[str(i) for i in ids],
                              auth=pb.Authorization(consent_id=consent_id, purpose=purpose),
                              feature_names=list(feature_names), reasons=int(reasons), unknown=unknown or "")
        if guest_X is not None:
            req.guest_features = np.ascontiguousarray(guest_X, dtype="<f8").tobytes()
        try:
            r = self._s.Score(req, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, "the scoring request") from None
        n = len(req.ids)
        if len(r.scores) != 8 * n or len(r.log_odds) not in (0, 8 * n):
            raise ProtocolError(f"{self.peer!r} returned {len(r.scores) // 8} scores for {n} ids")
        k = int(r.k)
        if len(r.reason_index) != 4 * n * k or len(r.reason_values) != 8 * n * k:
            raise ProtocolError(f"{self.peer!r} returned malformed reasons")
        idx = np.frombuffer(r.reason_index, dtype="<i4").reshape(n, k).astype(np.int64)
        if np.any((idx < -1) | (idx >= len(r.reason_names))):
            raise ProtocolError(f"{self.peer!r} returned reasons outside its reason names")
        scale = ({"pdo": r.scale.pdo, "base_score": r.scale.base_score, "base_odds": r.scale.base_odds}
                 if r.HasField("scale") else None)
        held = None
        if unknown is not None:
            held = np.unpackbits(np.frombuffer(r.guest_held, dtype=np.uint8))[:n].astype(bool)
            if held.size != n:
                raise ProtocolError(f"{self.peer!r} returned coverage for {held.size} of {n} ids")
        scores = np.frombuffer(r.scores, dtype="<f8").copy()
        return Scored(scores, np.frombuffer(r.log_odds, dtype="<f8").copy() if r.log_odds else None,
                      r.request_id, k, list(r.reason_names), idx,
                      np.frombuffer(r.reason_values, dtype="<f8").reshape(n, k).copy(), scale, held)

    def contribute_async(self, model_id: str, request_id: str, digests: bytes, auth: dict, hosts,
                         queries=None, final: bool = True, timeout: float | None = None, reasons: bool = False):
        """Start a Contribute call; returns a callable that waits for and returns the :class:`Contribution`.

        ``queries``/``final``: SecureBoost's first round of path queries, and
        whether a ``Decide`` may follow (``final=False`` keeps the request open
        on the host).
        """
        req = pb.ContributeRequest(model_id=model_id, request_id=request_id, id_digests=digests,
                                   auth=pb.Authorization(**auth), hosts=list(hosts),
                                   queries=queries_to_proto(queries), final=final, reasons=reasons)
        fut = self._s.Contribute.future(req, timeout=timeout or self.timeout)

        def result() -> Contribution:
            try:
                return Contribution.from_proto(fut.result(), self.peer)
            except grpc.RpcError as exc:
                raise _peer_error(exc, self.peer, "the scoring contribution") from None

        return result

    def decide_async(self, model_id: str, request_id: str, queries, final: bool,
                     timeout: float | None = None):
        """Start a Decide call (a further round of path queries); returns a callable for the packed answers.

        With ``queries`` empty and ``final`` true this only closes the request
        on the host; the caller need not wait for it.
        """
        req = pb.DecideRequest(model_id=model_id, request_id=request_id, queries=queries_to_proto(queries),
                               final=final)
        fut = self._s.Decide.future(req, timeout=timeout or self.timeout)
        n = len(queries.rows)

        def result() -> bytes:
            try:
                r = fut.result()
            except grpc.RpcError as exc:
                raise _peer_error(exc, self.peer, "the path queries") from None
            if r.n_decisions != n:
                raise ProtocolError(f"{self.peer!r} answered {r.n_decisions} of {n} path queries")
            return r.decisions

        return result

    def close_async(self, model_id: str, request_id: str) -> None:
        """Tell the host an open request is done (an empty, final Decide); nobody waits for the answer."""
        req = pb.DecideRequest(model_id=model_id, request_id=request_id, queries=pb.TreeQueries(), final=True)
        fut = self._s.Decide.future(req, timeout=self.timeout)
        _in_flight.add(fut)  # a dropped future would cancel the call
        fut.add_done_callback(_in_flight.discard)

    def pair_secret(self, model_id: str, timeout: float | None = None) -> bytes:
        try:
            return self._s.PairSecret(pb.PairSecretRequest(model_id=model_id), timeout=timeout or self.timeout).secret
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, "the mask secret request") from None


class GovernanceClient:
    """Calls the Governance service of party ``peer`` (audit heads, revocation, reload, export)."""

    def __init__(self, channel: grpc.Channel, peer: str, *, timeout: float = 30.0):
        self.peer = peer
        self.timeout = timeout
        self._g = pb_grpc.GovernanceStub(channel)

    def _call(self, what: str, fn, request) -> Any:
        try:
            return fn(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, what) from None

    def exchange_heads(self, seq: int, hash_: str, me: str) -> tuple[int, str]:
        r = self._call("the audit head exchange", self._g.ExchangeHeads, pb.AuditHead(seq=seq, hash=hash_, party=me))
        return int(r.seq), r.hash

    def held_heads(self) -> list[tuple[int, str]]:
        r = self._call("the held audit heads", self._g.HeldHeads, pb.HeldHeadsRequest())
        return [(int(h.seq), h.hash) for h in r.heads]

    def revoke(self, peer: str, reason: str = "") -> str:
        return self._call("the revocation", self._g.Revoke, pb.RevokeRequest(peer=peer, reason=reason)).message

    def admit(self, peer: str, reason: str = "") -> str:
        return self._call("the re-admission", self._g.Admit, pb.AdmitRequest(peer=peer, reason=reason)).message

    def reload(self) -> str:
        return self._call("the reload", self._g.Reload, pb.ReloadRequest()).message

    def approve_export(self, model_id: str, requester: str, note: str = "") -> str:
        return self._call("the export approval", self._g.ApproveExport,
                          pb.ApproveExportRequest(model_id=model_id, requester=requester, note=note)).message

    def export(self, model_id: str, note: str = "") -> str:
        return self._call("the model export", self._g.Export, pb.ExportRequest(model_id=model_id, note=note)).model_json

    def export_part(self, model_id: str) -> str:
        return self._call("the model part export", self._g.ExportPart, pb.ExportPartRequest(model_id=model_id)).part_json
