"""The :class:`~fedcredit.transport.base.Backend` of one job over a gRPC transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import PeerError
from ..base import Backend

if TYPE_CHECKING:  # pragma: no cover
    from .transport import GrpcTransport

__all__ = ["GrpcBackend"]


class GrpcBackend(Backend):
    """:class:`Backend` of one job over a :class:`GrpcTransport` (made by :meth:`GrpcTransport.channel`)."""

    def __init__(self, transport: GrpcTransport, job_id: str):
        self.transport = transport
        self.job_id = job_id
        self.party = transport.party

    @property
    def peers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.transport.peers)

    def send_bytes(self, peer: str, tag: str, payload: bytes) -> None:
        t = self.transport
        try:
            t._push(peer, self.job_id, tag, payload)
        except PeerError as exc:
            # a peer we cannot reach will not answer either: end pending receives from it now
            t._mailbox.fail(self.job_id, peer, str(exc))
            raise

    def recv_bytes(self, peer: str, tag: str, timeout: float) -> bytes:
        t = self.transport
        return t._mailbox.take(
            self.job_id,
            peer,
            tag,
            timeout,
            me=t.party,
            idle=lambda: t._probe(peer, self.job_id),
            idle_every=t.probe_interval,
        )

    def abort(self, reason: str) -> None:
        """Notify every peer (their pending receives from us fail with ``reason``) and end our own pending receives."""
        self.transport._abort_job(self.job_id, reason)

    def close(self) -> None:
        """End this job here: drop its buffered messages; later messages for it are refused."""
        self.transport._mailbox.close_job(self.job_id)
