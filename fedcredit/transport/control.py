"""Control and Health services on the wire: servicer adapters and clients.

The party process (:mod:`fedcredit.party`) implements job control in plain
Python against :class:`ControlHandler`; this module is the only place that
converts between those calls and the generated protobuf code of
``protos/fedcredit/v1/control.proto`` and ``health.proto`` (DESIGN §3: only
``transport/`` imports generated code).

Events travel as plain dicts::

    {"job_id", "party", "kind", "state", "step", "message",
     "fraction" (float or None), "detail" (dict), "time" (unix seconds)}

Errors: a handler raises fedcredit errors; the adapter turns them into gRPC
status codes (:data:`STATUS_OF`), and the client turns status codes back into
fedcredit errors (:func:`error_from_rpc`), so a refusal reads the same on both
sides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import grpc

from .._proto import control_pb2 as pb
from .._proto import control_pb2_grpc as pb_grpc
from .._proto import health_pb2 as hpb
from .._proto import health_pb2_grpc as hpb_grpc
from ..certs import TlsFiles, load_tls
from ..errors import ConfigError, DataError, FedcreditError, PeerError, PolicyError, ProtocolError
from ..jsonlimits import loads_limited
from .grpc import client_channel, peer_identity

__all__ = [
    "ControlHandler",
    "add_servicers",
    "ControlClient",
    "dial",
    "error_from_rpc",
    "STATUS_OF",
    "NotFound",
    "Throttled",
]

log = logging.getLogger("fedcredit.control")

#: An event's detail (a step's public result is capped at 16 KiB before it is sent; traffic rows add a little).
_DETAIL_MAX = 256 * 1024


class NotFound(FedcreditError, LookupError):
    """No such job (maps to NOT_FOUND)."""


class Throttled(FedcreditError):
    """A per-peer rate limit refused the call (maps to RESOURCE_EXHAUSTED, with a retry-after hint)."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


STATUS_OF: list[tuple[type, grpc.StatusCode]] = [
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Throttled, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PolicyError, grpc.StatusCode.PERMISSION_DENIED),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
    (PeerError, grpc.StatusCode.UNAVAILABLE),
    (FedcreditError, grpc.StatusCode.FAILED_PRECONDITION),
]


class ControlHandler(Protocol):
    """What the party implements; ``caller`` is the certificate's party name."""

    def submit_job(self, caller: str, job_json: str, source: str) -> str: ...
    def propose_job(self, caller: str, job_id: str, job_json: str, initiator_head: str,
                    attempt: int = 0) -> tuple[bool, str]: ...
    def start_job(self, caller: str, job_id: str, attempt: int = 0) -> None: ...
    def resume_job(self, caller: str, job_id: str) -> str: ...
    def report_status(self, caller: str, event: dict) -> None: ...
    def watch_job(self, caller: str, job_id: str) -> Iterator[dict]: ...
    def cancel_job(self, caller: str, job_id: str, reason: str, attempt: int | None = None) -> str: ...
    def list_jobs(self, caller: str, job_id: str, limit: int) -> list[dict]: ...
    def pending_jobs(self, caller: str) -> list[dict]: ...
    def decide_job(self, caller: str, job_id: str, approve: bool, reason: str) -> str: ...
    def health(self, caller: str) -> dict: ...


# --------------------------------------------------------------------------- conversions

def event_to_proto(e: dict) -> pb.JobEvent:
    frac = e.get("fraction")
    return pb.JobEvent(
        job_id=e.get("job_id", ""),
        party=e.get("party", ""),
        kind=e.get("kind", ""),
        state=e.get("state", ""),
        step=e.get("step", ""),
        message=e.get("message", "") or "",
        fraction=-1.0 if frac is None else float(frac),
        detail_json=json.dumps(e.get("detail") or {}, sort_keys=True, default=str),
        time=float(e.get("time", 0.0)),
    )


def event_from_proto(m: pb.JobEvent) -> dict:
    # limits on size, depth, number length and UTF-8 (fedcredit.jsonlimits): malformed -> INVALID_ARGUMENT
    detail = loads_limited(m.detail_json, what="event detail", max_bytes=_DETAIL_MAX) if m.detail_json else {}
    if not isinstance(detail, dict):
        raise ProtocolError("event detail must be a JSON object")
    return {
        "job_id": m.job_id,
        "party": m.party,
        "kind": m.kind,
        "state": m.state,
        "step": m.step,
        "message": m.message,
        "fraction": None if m.fraction < 0 else m.fraction,
        "detail": detail,
        "time": m.time,
    }


def _summary_to_proto(d: dict) -> pb.JobSummary:
    return pb.JobSummary(
        job_id=d["job_id"], name=d.get("name", ""), initiator=d.get("initiator", ""), role=d.get("role", ""),
        state=d.get("state", ""), reason=d.get("reason", "") or "", created=float(d.get("created", 0)),
        updated=float(d.get("updated", 0)), detail_json=json.dumps(d.get("detail") or {}, sort_keys=True, default=str),
    )


def _summary_from_proto(m: pb.JobSummary) -> dict:
    return {
        "job_id": m.job_id, "name": m.name, "initiator": m.initiator, "role": m.role, "state": m.state,
        "reason": m.reason, "created": m.created, "updated": m.updated,
        "detail": loads_limited(m.detail_json, what="job summary", max_bytes=64 * 2**20, max_depth=64) if m.detail_json else {},
    }


# --------------------------------------------------------------------------- server side

def _abort_for(context: grpc.ServicerContext, exc: BaseException) -> None:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            if getattr(exc, "retry_after", None) is not None:
                context.set_trailing_metadata((("fedcredit-retry-after", f"{exc.retry_after:.3f}"),))
            context.abort(code, str(exc)[:4000])
    log.exception("internal error in a control call")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"[:4000])


def _guard(fn):
    def wrapper(self, request, context):
        caller = peer_identity(context)
        try:
            return fn(self, caller, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status, the party keeps serving
            _abort_for(context, exc)

    wrapper.__name__ = fn.__name__
    return wrapper


class _ControlServicer(pb_grpc.ControlServicer):
    def __init__(self, handler: ControlHandler):
        self.h = handler

    @_guard
    def SubmitJob(self, caller, request, context):
        return pb.SubmitJobReply(job_id=self.h.submit_job(caller, request.job_json, request.source))

    @_guard
    def ProposeJob(self, caller, request, context):
        ok, reason, *pending = self.h.propose_job(caller, request.job_id, request.job_json, request.initiator_head,
                                                  attempt=request.attempt)
        return pb.Decision(accepted=ok, reason=reason, party=self.h.name,
                           approval_expires=float(pending[0]) if pending else 0.0)

    @_guard
    def StartJob(self, caller, request, context):
        self.h.start_job(caller, request.job_id, attempt=request.attempt)
        return pb.Ack(ok=True)

    @_guard
    def ResumeJob(self, caller, request, context):
        return pb.SubmitJobReply(job_id=self.h.resume_job(caller, request.job_id))

    @_guard
    def ReportStatus(self, caller, request, context):
        self.h.report_status(caller, event_from_proto(request))
        return pb.Ack(ok=True)

    def WatchJob(self, request, context):
        caller = peer_identity(context)
        try:
            it = self.h.watch_job(caller, request.job_id)
            for e in it:
                if not context.is_active():
                    return
                yield event_to_proto(e)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001
            _abort_for(context, exc)

    @_guard
    def CancelJob(self, caller, request, context):
        attempt = request.attempt if request.HasField("attempt") else None
        return pb.Ack(ok=True, message=self.h.cancel_job(caller, request.job_id, request.reason, attempt=attempt))

    @_guard
    def ListJobs(self, caller, request, context):
        return pb.ListJobsReply(jobs=[_summary_to_proto(d) for d in self.h.list_jobs(caller, request.job_id, request.limit)])

    @_guard
    def PendingJobs(self, caller, request, context):
        return pb.PendingJobsReply(jobs_json=json.dumps(self.h.pending_jobs(caller), sort_keys=True, default=str))

    @_guard
    def DecideJob(self, caller, request, context):
        return pb.Ack(ok=True, message=self.h.decide_job(caller, request.job_id, request.approve, request.reason))


class _HealthServicer(hpb_grpc.HealthServicer):
    def __init__(self, handler: ControlHandler):
        self.h = handler

    @_guard
    def Check(self, caller, request, context):
        d = self.h.health(caller)
        return hpb.HealthCheckReply(
            status=hpb.HealthCheckReply.SERVING if d.get("serving") else hpb.HealthCheckReply.NOT_SERVING,
            party=d.get("party", ""), version=d.get("version", ""), running_jobs=int(d.get("running_jobs", 0)),
            caller=caller, cert_not_after=float(d.get("cert_not_after", 0.0)), ca_not_after=float(d.get("ca_not_after", 0.0)),
        )


def add_servicers(server: grpc.Server, handler: ControlHandler) -> None:
    """Add the Control and Health services, backed by ``handler``, to ``server`` (before it starts)."""
    pb_grpc.add_ControlServicer_to_server(_ControlServicer(handler), server)
    hpb_grpc.add_HealthServicer_to_server(_HealthServicer(handler), server)


# --------------------------------------------------------------------------- client side

def error_from_rpc(exc: grpc.RpcError, peer: str, what: str) -> FedcreditError:
    """A fedcredit error for a failed Control/Health call to ``peer``."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PolicyError(f"{peer!r} refused {what}: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return PolicyError(f"{peer!r} did not accept our certificate for {what}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ConfigError(f"{peer!r} rejected {what}: {details}", details.split("\n  ")[1:] or None)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{peer!r}: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerError(f"party {peer!r} is unreachable ({details}); {what} failed", peer=peer)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerError(f"party {peer!r} did not answer {what} in time", peer=peer)
    return FedcreditError(f"{what} at {peer!r} failed: {details} ({getattr(code, 'name', code)})")


def dial(address: str, *, target: str, tls: TlsFiles | None, me: str | None = None) -> grpc.Channel:
    """An mTLS client channel to the party ``target`` at ``address``.

    Parameters
    ----------
    address : str
        ``host:port``.
    target : str
        The party name the server's certificate must carry.
    tls : TlsFiles or None
        Our CA, certificate and key. None only for an insecure (test) party,
        then ``me`` names us in metadata.
    """
    return client_channel(address, target=target, tls=load_tls(tls) if tls is not None else None, me=me or target)


class ControlClient:
    """Calls the Control and Health services of party ``peer`` over ``channel``.

    Every method raises a fedcredit error (see :func:`error_from_rpc`) instead
    of ``grpc.RpcError``.
    """

    def __init__(self, channel: grpc.Channel, peer: str, *, timeout: float = 30.0):
        self.peer = peer
        self.timeout = timeout
        self._c = pb_grpc.ControlStub(channel)
        self._h = hpb_grpc.HealthStub(channel)

    def _call(self, what: str, fn, request, timeout: float | None = None, wait_for_ready: bool = False):
        try:
            return fn(request, timeout=self.timeout if timeout is None else timeout, wait_for_ready=wait_for_ready)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, what) from None

    def submit(self, job_json: str, source: str = "") -> str:
        return self._call("the job submission", self._c.SubmitJob, pb.SubmitJobRequest(job_json=job_json, source=source)).job_id

    def propose(self, job_id: str, job_json: str, initiator_head: str = "", timeout: float | None = None, *,
                attempt: int = 0) -> tuple[bool, str]:
        """Propose a job (``attempt`` > 0: resume it); waits up to ``timeout`` for a peer that is (re)connecting."""
        return self.propose_decision(job_id, job_json, initiator_head, timeout, attempt=attempt)[:2]

    def propose_decision(self, job_id: str, job_json: str, initiator_head: str = "",
                         timeout: float | None = None, *, attempt: int = 0) -> tuple[bool, str, float]:
        """Like :meth:`propose`, plus the approval expiry (> 0: waiting for the peer's operator)."""
        d = self._call("the job proposal", self._c.ProposeJob,
                       pb.ProposeJobRequest(job_id=job_id, job_json=job_json, initiator_head=initiator_head,
                                            attempt=attempt), timeout, wait_for_ready=True)
        exp = d.approval_expires
        return d.accepted, d.reason, exp if d.accepted and exp == exp and exp > 0 else 0.0

    def pending_jobs(self) -> list[dict]:
        """The approval queue of this (own) party."""
        r = self._call("the approval queue", self._c.PendingJobs, pb.PendingJobsRequest())
        jobs = loads_limited(r.jobs_json, what="approval queue", max_bytes=64 * 2**20, max_depth=64) if r.jobs_json else []
        if not isinstance(jobs, list):
            raise ProtocolError("the approval queue must be a JSON array")
        return jobs

    def decide(self, job_id: str, approve: bool, reason: str = "") -> str:
        """Approve or reject ``job_id`` as this party's operator."""
        return self._call("the approval decision", self._c.DecideJob,
                          pb.DecideJobRequest(job_id=job_id, approve=approve, reason=reason)).message

    def start(self, job_id: str, timeout: float | None = None, *, attempt: int = 0) -> None:
        self._call("the job start", self._c.StartJob, pb.StartJobRequest(job_id=job_id, attempt=attempt), timeout,
                   wait_for_ready=True)

    def resume(self, job_id: str) -> str:
        """Ask our own party (the job's initiator) to resume a failed or cancelled job; returns its id."""
        return self._call("the job resume", self._c.ResumeJob, pb.ResumeJobRequest(job_id=job_id)).job_id

    def report(self, event: dict, timeout: float | None = None) -> None:
        self._call("a status report", self._c.ReportStatus, event_to_proto(event), timeout)

    def cancel(self, job_id: str, reason: str = "", timeout: float | None = None, *, attempt: int | None = None) -> str:
        """Cancel a job (``attempt``: only that attempt of it, see docs/party.md "Resume")."""
        req = pb.CancelJobRequest(job_id=job_id, reason=reason)
        if attempt is not None:
            req.attempt = attempt
        return self._call("the cancellation", self._c.CancelJob, req, timeout).message

    def list_jobs(self, job_id: str = "", limit: int = 0) -> list[dict]:
        r = self._call("the job list", self._c.ListJobs, pb.ListJobsRequest(job_id=job_id, limit=limit))
        return [_summary_from_proto(j) for j in r.jobs]

    def watch(self, job_id: str) -> Iterator[dict]:
        """Events of ``job_id`` as they happen, until the job ends (no overall timeout)."""
        try:
            for m in self._c.WatchJob(pb.WatchJobRequest(job_id=job_id)):
                yield event_from_proto(m)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer, "watching the job") from None

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        r = self._call("the health check", self._h.Check, hpb.HealthCheckRequest(), timeout)
        return {
            "serving": r.status == hpb.HealthCheckReply.SERVING,
            "party": r.party,
            "version": r.version,
            "running_jobs": r.running_jobs,
            "caller": r.caller,
            "cert_not_after": r.cert_not_after,
            "ca_not_after": r.ca_not_after,
        }
