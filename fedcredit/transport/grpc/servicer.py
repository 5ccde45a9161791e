"""The Federation service: receives pushed messages into the mailbox and answers liveness pings.

Each ``Push`` is checked in this order before a payload byte is stored: the
caller is a current peer (its certificate, not the header, names the sender),
the sender's push rate and concurrency (:class:`~.limits.PeerLimits`), the
header (sender, job id, the party's job guard, kind, tag, message id, digest
length, declared size), then the sender's buffer budget
(:meth:`~.mailbox.Mailbox.admit`), then each chunk (order, size, total) and
finally the SHA-256 over job id, tag and payload.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import grpc

from ..._proto import federation_pb2 as pb
from ..._proto import federation_pb2_grpc as pb_grpc
from ...errors import FedcreditError
from ...ids import is_name
from .framing import message_digest, valid_message_id, valid_tag
from .limits import Refuse, log_limited
from .options import MAX_CHUNK_BYTES, RETRY_AFTER_MD

if TYPE_CHECKING:  # pragma: no cover
    from .transport import GrpcTransport

__all__ = ["FederationServicer"]


class FederationServicer(pb_grpc.FederationServicer):
    """Federation servicer of one :class:`~fedcredit.transport.grpc.GrpcTransport` (its mailbox, limits, guard)."""

    def __init__(self, transport: GrpcTransport):
        self.t = transport

    def Push(self, request_iterator, context):
        sender = self.t.authorize(context)
        self.t._mark_alive(sender)
        try:
            self.t._limits.acquire(sender)
            try:
                return self._push(sender, request_iterator, context)
            finally:
                self.t._limits.release(sender)
        except Refuse as r:
            if r.retry_after is not None:
                log_limited(logging.INFO, f"defer:{self.t.party}:{sender}", "%s deferred a message from %s: %s", self.t.party,
                             sender, r.details)
                context.set_trailing_metadata(((RETRY_AFTER_MD, f"{r.retry_after:.3f}"),))
            else:
                log_limited(logging.WARNING, f"refuse:{self.t.party}:{sender}", "%s refused a message from %s: %s", self.t.party,
                             sender, r.details)
            context.abort(r.code, r.details)

    def _push(self, sender: str, requests, context) -> pb.PushAck:
        first = next(requests, None)
        if first is None:
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, "empty push: no chunks")
        if not first.HasField("header") or first.seq != 0:
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must carry the header and seq 0")
        h = first.header
        if h.sender != sender:
            raise Refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                f"message claims sender {h.sender!r} but the client certificate is {sender!r}",
            )
        if not is_name(h.job_id):  # the one identifier grammar (fedcredit.ids): no '.', '..', '/', controls
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"invalid job id {h.job_id[:140]!r}")
        if self.t.job_guard is not None:  # the sender must have a role in a job this party knows
            try:
                self.t.job_guard(sender, h.job_id)
            except FedcreditError as exc:
                raise Refuse(grpc.StatusCode.PERMISSION_DENIED, str(exc)[:2000]) from None
        if h.kind == pb.MESSAGE_KIND_ABORT:
            reason = h.reason[:2000] or "no reason given"
            log_limited(logging.INFO, f"abort:{self.t.party}:{sender}", "%s: peer %s aborted job %s: %s", self.t.party, sender,
                         h.job_id, reason)
            self.t._mailbox.fail(h.job_id, sender, f"peer {sender!r} aborted job {h.job_id!r}: {reason}")
            return pb.PushAck()
        if h.kind != pb.MESSAGE_KIND_DATA:
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"unknown message kind {h.kind}")
        if not valid_tag(h.tag):
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"invalid tag {h.tag[:140]!r}")
        if not valid_message_id(h.message_id):
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, "invalid message id")
        if len(h.sha256) != 32:
            raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, "header sha256 must be 32 bytes")
        total = h.total_size
        if total > self.t.max_message_bytes:
            raise Refuse(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message {h.tag!r} of {total} bytes exceeds this party's limit of {self.t.max_message_bytes} bytes",
            )
        status = self.t._mailbox.admit(h.job_id, sender, h.tag, h.message_id, total)
        if status == "duplicate":
            return pb.PushAck(duplicate=True, received_bytes=total)
        try:
            parts: list[bytes] = []
            got = 0
            digest = message_digest(h.job_id, h.tag)
            expected = 0
            chunk = first
            while chunk is not None:
                if chunk.seq != expected:
                    raise Refuse(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"chunk {chunk.seq} of {h.tag!r} out of order: expected chunk {expected} (missing chunk?)",
                    )
                if expected and chunk.HasField("header"):
                    raise Refuse(grpc.StatusCode.INVALID_ARGUMENT, f"chunk {expected} of {h.tag!r} repeats the header")
                data = chunk.data
                if len(data) > MAX_CHUNK_BYTES:
                    raise Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED, f"chunk of {len(data)} bytes exceeds {MAX_CHUNK_BYTES}")
                got += len(data)
                if got > total:
                    raise Refuse(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"message {h.tag!r} carries more than its declared {total} bytes",
                    )
                digest.update(data)
                parts.append(data)
                expected += 1
                chunk = next(requests, None)
            if got != total or (h.chunk_count and expected != h.chunk_count):
                raise Refuse(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"incomplete message {h.tag!r}: {got} of {total} bytes in {expected} of {h.chunk_count} chunks",
                )
            if not secrets.compare_digest(digest.digest(), h.sha256):
                raise Refuse(grpc.StatusCode.DATA_LOSS,
                              f"message {h.tag!r} does not match its sha256 digest (over job id, tag and payload)")
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
            del parts
        except BaseException:
            self.t._mailbox.release(sender, total)
            raise
        stored = self.t._mailbox.put(h.job_id, sender, h.tag, h.message_id, payload, total)
        return pb.PushAck(duplicate=not stored, received_bytes=total)

    def Ping(self, request, context):
        self.t._mark_alive(self.t.authorize(context))
        return pb.PingReply(party=self.t.party)
