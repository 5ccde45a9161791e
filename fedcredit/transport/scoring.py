"""Scoring and Governance services on the wire (``protos/fedcredit/v1/scoring.proto``).

The serving side (:mod:`fedcredit.serving`) implements :class:`ScoringHandler`
in plain Python; this module converts between those calls and the generated
protobuf code, and turns fedcredit errors into gRPC status codes and back
(the same table as the Control service, :data:`~fedcredit.transport.control.STATUS_OF`),
so a refusal reads the same on both sides: a :class:`~fedcredit.errors.PolicyError`
becomes PERMISSION_DENIED with its reason and comes back as a PolicyError.

Arrays travel as little-endian fixed-width bytes (float64 scores and
features, uint64 masked partial scores, int64 split ids, packed bits).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import grpc
import numpy as np

from .._proto import scoring_pb2 as pb
from .._proto import scoring_pb2_grpc as pb_grpc
from ..errors import ProtocolError
from .control import STATUS_OF, error_from_rpc
from .grpc import peer_identity

__all__ = ["ScoringHandler", "add_scoring_servicers", "ScoringClient", "GovernanceClient", "Contribution"]

log = logging.getLogger("fedcredit.scoring")


class ScoringHandler(Protocol):
    """What the party implements; ``caller`` is the certificate's party name."""

    name: str

    def score(self, caller: str, model_id: str, ids: list[str], auth: dict, guest_X, feature_names: list[str]
              ) -> tuple[np.ndarray, str]: ...
    def contribute(self, caller: str, model_id: str, request_id: str, digests: bytes, auth: dict,
                   hosts: list[str]) -> "Contribution": ...
    def pair_secret(self, caller: str, model_id: str) -> bytes: ...
    def exchange_heads(self, caller: str, seq: int, hash_: str) -> tuple[int, str]: ...
    def held_heads(self, caller: str) -> list[tuple[int, str]]: ...
    def revoke(self, caller: str, peer: str, reason: str) -> str: ...
    def reload(self, caller: str) -> str: ...
    def approve_export(self, caller: str, model_id: str, requester: str, note: str) -> str: ...
    def export(self, caller: str, model_id: str, note: str) -> str: ...
    def export_part(self, caller: str, model_id: str) -> str: ...


class Contribution:
    """A host's reply: ``kind`` and either ``masked`` (uint64) or ``split_ids`` + packed ``decisions``."""

    __slots__ = ("kind", "masked", "split_ids", "decisions", "n")

    def __init__(self, kind: str, n: int, masked=None, split_ids=None, decisions: bytes = b""):
        self.kind, self.n, self.masked, self.split_ids, self.decisions = kind, n, masked, split_ids, decisions

    def to_proto(self) -> pb.ContributeReply:
        return pb.ContributeReply(
            kind=self.kind, n=self.n,
            masked=b"" if self.masked is None else np.asarray(self.masked, dtype="<u8").tobytes(),
            split_ids=b"" if self.split_ids is None else np.asarray(self.split_ids, dtype="<i8").tobytes(),
            decisions=self.decisions,
        )

    @classmethod
    def from_proto(cls, m: pb.ContributeReply, peer: str) -> "Contribution":
        if len(m.masked) % 8 or len(m.split_ids) % 8:
            raise ProtocolError(f"{peer!r} sent a malformed contribution (ragged arrays)")
        return cls(m.kind, m.n, masked=np.frombuffer(m.masked, dtype="<u8") if m.masked else None,
                   split_ids=np.frombuffer(m.split_ids, dtype="<i8"), decisions=m.decisions)


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
        scores, rid = self.h.score(caller, r.model_id, list(r.ids), _auth(r.auth), X, list(r.feature_names))
        return pb.ScoreReply(scores=np.asarray(scores, dtype="<f8").tobytes(), request_id=rid, n=len(scores))

    @_guard
    def Contribute(self, caller, r):
        return self.h.contribute(caller, r.model_id, r.request_id, r.id_digests, _auth(r.auth), list(r.hosts)).to_proto()

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
              timeout: float | None = None) -> tuple[np.ndarray, str]:
        """Scores of ``ids`` (this party's own service: its operator asks, it is the model's guest)."""
        req = pb.ScoreRequest(model_id=model_id, ids=[str(i) for i in ids],
                              auth=pb.Authorization(consent_id=consent_id, purpose=purpose),
                              feature_names=list(feature_names))
        if guest_X is not None:
            req.guest_features = np.ascontiguousarray(guest_X, dtype="<f8").tobytes()
        try:
            r = self._s.Score(req, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, "the scoring request") from None
        if len(r.scores) != 8 * len(req.ids):
            raise ProtocolError(f"{self.peer!r} returned {len(r.scores) // 8} scores for {len(req.ids)} ids")
        return np.frombuffer(r.scores, dtype="<f8").copy(), r.request_id

    def contribute_async(self, model_id: str, request_id: str, digests: bytes, auth: dict, hosts,
                         timeout: float | None = None):
        """Start a Contribute call; returns a callable that waits for and returns the :class:`Contribution`."""
        req = pb.ContributeRequest(model_id=model_id, request_id=request_id, id_digests=digests,
                                   auth=pb.Authorization(**auth), hosts=list(hosts))
        fut = self._s.Contribute.future(req, timeout=timeout or self.timeout)

        def result() -> Contribution:
            try:
                return Contribution.from_proto(fut.result(), self.peer)
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, self.peer, "the scoring contribution") from None

        return result

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

    def reload(self) -> str:
        return self._call("the reload", self._g.Reload, pb.ReloadRequest()).message

    def approve_export(self, model_id: str, requester: str, note: str = "") -> str:
        return self._call("the export approval", self._g.ApproveExport,
                          pb.ApproveExportRequest(model_id=model_id, requester=requester, note=note)).message

    def export(self, model_id: str, note: str = "") -> str:
        return self._call("the model export", self._g.Export, pb.ExportRequest(model_id=model_id, note=note)).model_json

    def export_part(self, model_id: str) -> str:
        return self._call("the model part export", self._g.ExportPart, pb.ExportPartRequest(model_id=model_id)).part_json
