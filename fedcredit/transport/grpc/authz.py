"""One authorization check in front of every RPC a party serves.

:class:`Authorizer` is a gRPC server interceptor that every
:class:`~fedcredit.transport.grpc.GrpcTransport` server is built with, so it
wraps every method of every servicer added to that server (Federation,
Health, Control, Scoring, Governance, and any added later). Before a method
runs, :meth:`Authorizer.check` decides, from the caller's verified
certificate (:func:`~fedcredit.transport.grpc.peer_identity`) and the method's
rule in :data:`RULES`:

* **PEER** — the caller is in the party's current peer list. A revoked peer
  has been removed from it (``fedcredit party revoke``), so it is refused from
  its next call on, on every service.
* **OPERATOR** — the caller is this party itself (its own operator's CLI
  presents the party's own certificate).
* where a unary request names a job (a ``job_id`` field), the transport's
  ``job_guard`` (set by the party) also checks the caller has a role in that
  job; the Federation ``Push`` applies the same guard to its header's job id.

A method without a rule is refused (fail closed): adding an RPC without
adding it here makes every call to it fail, and
``tests/adversarial/test_adv_mechanisms.py`` checks that :data:`RULES` covers
exactly the methods the protos declare and that every method registered on a
party's server refuses revoked and unlisted callers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Flag

import grpc

from ...errors import FedcreditError
from .identity import peer_identity

__all__ = ["Access", "RULES", "Authorizer"]

log = logging.getLogger("fedcredit.transport")


class Access(Flag):
    """Who may call a method."""

    PEER = 1
    OPERATOR = 2


_P, _O = Access.PEER, Access.OPERATOR

#: Every RPC of ``protos/fedcredit/v1`` and who may call it.
RULES: dict[str, Access] = {
    "/fedcredit.v1.Federation/Push": _P,
    "/fedcredit.v1.Federation/Ping": _P,
    "/fedcredit.v1.Health/Check": _P | _O,
    "/fedcredit.v1.Control/SubmitJob": _O,
    "/fedcredit.v1.Control/ProposeJob": _P,
    "/fedcredit.v1.Control/StartJob": _P,
    "/fedcredit.v1.Control/ReportStatus": _P,
    "/fedcredit.v1.Control/WatchJob": _O,
    "/fedcredit.v1.Control/CancelJob": _P | _O,
    "/fedcredit.v1.Control/ListJobs": _O,
    "/fedcredit.v1.Control/PendingJobs": _O,
    "/fedcredit.v1.Control/DecideJob": _O,
    "/fedcredit.v1.Control/ResumeJob": _O,
    "/fedcredit.v1.Scoring/Score": _O,
    "/fedcredit.v1.Scoring/Contribute": _P,
    "/fedcredit.v1.Scoring/Decide": _P,
    "/fedcredit.v1.Scoring/PairSecret": _P,
    "/fedcredit.v1.Governance/ExchangeHeads": _P,
    "/fedcredit.v1.Governance/HeldHeads": _P,
    "/fedcredit.v1.Governance/Revoke": _O,
    "/fedcredit.v1.Governance/Admit": _O,
    "/fedcredit.v1.Governance/Reload": _O,
    "/fedcredit.v1.Governance/ApproveExport": _O,
    "/fedcredit.v1.Governance/Export": _O,
    "/fedcredit.v1.Governance/ExportPart": _P,
}

#: Attribute set on every wrapped behaviour (tests check it is there).
MARK = "__fedcredit_authorized__"


class Authorizer(grpc.ServerInterceptor):
    """Server interceptor running :meth:`check` before every method (see the module docstring).

    Parameters
    ----------
    transport : GrpcTransport
        Gives the party name, the current peer list, and two optional hooks
        the party sets: ``refusal_reason(caller) -> str | None`` (why a caller
        is not a peer, e.g. revoked and when) and ``job_guard(caller, job_id)``
        (raises a fedcredit error unless the caller has a role in the job).
    """

    def __init__(self, transport):
        self.t = transport

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        unary_request = not handler.request_streaming
        des = handler.request_deserializer
        for attr in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, attr)
            if inner is not None:
                return handler._replace(**{attr: self._wrap(method, inner, unary_request),
                                           "request_deserializer": _tolerant(des) if des is not None else None})
        return handler

    def _wrap(self, method: str, inner: Callable, unary_request: bool) -> Callable:
        def behaviour(request, context):
            self.check(method, context, None)  # who first, before looking at what was sent
            if unary_request:
                _refuse_malformed(request, context)
                self.check_job(context, request)
                return inner(request, context)
            return inner(_checked_stream(request, context), context)

        setattr(behaviour, MARK, method)
        return behaviour

    def check(self, method: str, context: grpc.ServicerContext, request=None) -> str:
        """The caller's name if it may call ``method`` (with ``request``); aborts the call otherwise."""
        caller = peer_identity(context)
        me = self.t.party
        rule = RULES.get(method)
        if rule is None:
            log.warning("%s refused %s from %s: no authorization rule for this method", me, method, caller)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} has no authorization rule on {me!r}")
        if caller == me:
            if Access.OPERATOR not in rule:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} is for peers of {me!r}, not its operator")
            return caller
        if Access.PEER not in rule:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"only {me!r}'s own operator may call {method.rsplit('/', 1)[-1]} (caller: {caller!r})")
        if caller not in self.t.peers:
            why = None
            hook = getattr(self.t, "refusal_reason", None)
            if hook is not None:
                try:
                    why = hook(caller)
                except Exception:  # noqa: BLE001 - a broken hook must not open the door
                    log.exception("refusal_reason hook failed")
            log.warning("%s refused %s from %s: not a current peer", me, method, caller)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, why or f"party {caller!r} is not a peer of {me!r}")
        if request is not None:
            self.check_job(context, request, caller)
        return caller

    def check_job(self, context: grpc.ServicerContext, request, caller: str | None = None) -> None:
        """Abort unless the caller has a role in the job a unary request names (``job_id``), via ``job_guard``."""
        job_id = getattr(request, "job_id", "")
        guard = getattr(self.t, "job_guard", None)
        if not job_id or guard is None:
            return
        caller = caller or peer_identity(context)
        if caller == self.t.party:
            return
        try:
            guard(caller, job_id)
        except FedcreditError as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc)[:2000])


class _Malformed:
    """Stands for a request that did not parse (gRPC would answer INTERNAL; we answer INVALID_ARGUMENT)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _tolerant(deserializer: Callable) -> Callable:
    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, bad UTF-8 in a string field, ...
            return _Malformed(str(exc)[:300])

    return parse


def _refuse_malformed(request, context: grpc.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.reason}")


def _checked_stream(requests, context: grpc.ServicerContext):
    for r in requests:
        _refuse_malformed(r, context)
        yield r
