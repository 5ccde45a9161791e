"""Messages received but not yet taken: a bounded, per-sender buffer keyed by (job, sender, tag)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc

from ...errors import PeerError
from .limits import Refuse

__all__ = ["Mailbox", "MSG_OVERHEAD", "MAX_ORPHAN_JOBS"]

log = logging.getLogger("fedcredit.transport")

#: Bytes charged per buffered message on top of its payload (bounds the bookkeeping of many tiny messages).
MSG_OVERHEAD = 512
#: Jobs not (yet) opened here that one sender may have messages buffered for.
MAX_ORPHAN_JOBS = 256
#: Retry-after hint (seconds) of a push deferred because the sender's receive budget is full.
_BUFFER_RETRY_AFTER = 1.0


class Mailbox:
    """Messages received but not yet taken, keyed by (job, sender, tag).

    Each sender has its own budget of ``max_bytes`` (stored and reserved
    bytes plus a fixed overhead per message), so one peer's pushes can never
    fill the buffer another peer's job needs. A sender over its budget is
    *deferred* (RESOURCE_EXHAUSTED with a retry-after hint the fedcredit
    sender honours), not failed. Messages (and aborts) for jobs this party has
    not opened are kept at most ``orphan_ttl`` seconds and for at most
    :data:`MAX_ORPHAN_JOBS` jobs per sender: a peer pushing into jobs that
    never run here only ever occupies its own, bounded, expiring share.
    """

    def __init__(self, max_bytes: int, *, orphan_ttl: float = 120.0, clock=time.monotonic):
        self.cv = threading.Condition()
        self.max_bytes = max_bytes  # per sender
        self.orphan_ttl = float(orphan_ttl)
        self._clock = clock
        self.used = 0  # stored + reserved bytes (+ overhead), all senders
        self.used_by: dict[str, int] = {}
        self.boxes: dict[tuple[str, str, str], bytes] = {}
        self.ids: dict[tuple[str, str, str], str] = {}  # message id stored/delivered under each key
        self.failed: dict[tuple[str, str], str] = {}  # (job, sender) -> reason ; sender "*" = whole job
        self.closed: set[str] = set()
        self.opened: set[str] = set()
        self.orphans: dict[str, dict[str, float]] = {}  # sender -> {job not opened here: first seen}
        self.shutdown_reason: str | None = None

    def _charge(self, sender: str, n: int) -> None:
        self.used += n
        left = self.used_by.get(sender, 0) + n
        if left > 0:
            self.used_by[sender] = left
        else:
            self.used_by.pop(sender, None)

    def _orphan(self, job: str, sender: str) -> None:
        """Note that ``sender`` sent something for ``job``, which is not open here (caller holds the lock)."""
        if job in self.opened:
            return
        jobs = self.orphans.setdefault(sender, {})
        if job not in jobs:
            if len(jobs) >= MAX_ORPHAN_JOBS:
                self._expire()
            if len(jobs) >= MAX_ORPHAN_JOBS:
                raise Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{len(jobs)} jobs from {sender!r} that have not started here are already buffered",
                              retry_after=_BUFFER_RETRY_AFTER)
            jobs[job] = self._clock()

    def _expire(self) -> int:
        """Drop what was buffered for jobs not opened here within ``orphan_ttl`` (caller holds the lock)."""
        now, dropped = self._clock(), 0
        for sender, jobs in list(self.orphans.items()):
            for job, seen in list(jobs.items()):
                if now - seen < self.orphan_ttl:
                    continue
                del jobs[job]
                for key in [k for k in self.boxes if k[0] == job and k[1] == sender]:
                    self._charge(sender, -(len(self.boxes.pop(key)) + MSG_OVERHEAD))
                    dropped += 1
                for key in [k for k in self.ids if k[0] == job and k[1] == sender]:
                    del self.ids[key]
                self.failed.pop((job, sender), None)
            if not jobs:
                del self.orphans[sender]
        if dropped:
            log.info("dropped %d buffered message(s) for jobs that did not start within %gs", dropped, self.orphan_ttl)
        return dropped

    # -- server side
    def admit(self, job: str, sender: str, tag: str, message_id: str, size: int) -> str:
        """Check a header before reading its chunks: 'new' (bytes reserved), 'duplicate', or raise Refuse."""
        with self.cv:
            if self.shutdown_reason is not None:
                raise Refuse(grpc.StatusCode.UNAVAILABLE, "party is shutting down")
            if job in self.closed:
                raise Refuse(grpc.StatusCode.FAILED_PRECONDITION, f"job {job!r} is closed on this party")
            key = (job, sender, tag)
            prev = self.ids.get(key)
            if prev == message_id:
                return "duplicate"
            if prev is not None:
                raise Refuse(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"a different message was already received under tag {tag!r} in job {job!r} (replay?)",
                )
            need = size + MSG_OVERHEAD
            if self.used_by.get(sender, 0) + need > self.max_bytes:
                self._expire()
            held = self.used_by.get(sender, 0)
            if held + need > self.max_bytes:
                raise Refuse(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"receive buffer full for {sender!r} ({held} of {self.max_bytes} bytes held); message of "
                    f"{size} bytes deferred",
                    retry_after=_BUFFER_RETRY_AFTER,
                )
            self._orphan(job, sender)
            self._charge(sender, need)
            return "new"

    def release(self, sender: str, size: int) -> None:
        with self.cv:
            self._charge(sender, -(size + MSG_OVERHEAD))

    def put(self, job: str, sender: str, tag: str, message_id: str, payload: bytes, reserved: int) -> bool:
        """Store a reassembled message; False if a concurrent duplicate won the race."""
        with self.cv:
            self._charge(sender, -(reserved + MSG_OVERHEAD))
            key = (job, sender, tag)
            if job in self.closed or key in self.ids:
                return False
            self.ids[key] = message_id
            self.boxes[key] = payload
            self._charge(sender, len(payload) + MSG_OVERHEAD)
            self.cv.notify_all()
            return True

    def fail(self, job: str, sender: str, reason: str) -> None:
        with self.cv:
            if sender != "*":
                self._orphan(job, sender)
            self.failed.setdefault((job, sender), reason)
            self.cv.notify_all()

    def close_job(self, job: str) -> None:
        with self.cv:
            self.closed.add(job)
            self.opened.discard(job)
            for key in [k for k in self.boxes if k[0] == job]:
                self._charge(key[1], -(len(self.boxes.pop(key)) + MSG_OVERHEAD))
            for key in [k for k in self.ids if k[0] == job]:
                del self.ids[key]
            for key in [k for k in self.failed if k[0] == job]:
                del self.failed[key]
            for jobs in self.orphans.values():
                jobs.pop(job, None)
            self.cv.notify_all()

    def open_job(self, job: str) -> None:
        with self.cv:
            self.closed.discard(job)
            self.opened.add(job)
            for jobs in self.orphans.values():  # what arrived early now belongs to a running job
                jobs.pop(job, None)

    def shutdown(self, reason: str) -> None:
        with self.cv:
            self.shutdown_reason = reason
            self.cv.notify_all()

    # -- receiver side
    def take(
        self,
        job: str,
        sender: str,
        tag: str,
        timeout: float,
        *,
        me: str,
        idle: Callable[[], None] | None = None,
        idle_every: float = 1.0,
    ) -> bytes:
        deadline = time.monotonic() + timeout
        next_idle = time.monotonic() + idle_every
        key = (job, sender, tag)
        while True:
            with self.cv:
                while True:
                    payload = self.boxes.pop(key, None)
                    if payload is not None:
                        self._charge(sender, -(len(payload) + MSG_OVERHEAD))
                        return payload
                    if job in self.closed:
                        raise PeerError(f"job {job!r} was closed on {me!r} while waiting for {tag!r} from {sender!r}", peer=sender)
                    if (job, sender) in self.failed:
                        raise PeerError(self.failed[(job, sender)], peer=sender)
                    if (job, "*") in self.failed:
                        raise PeerError(self.failed[(job, "*")], peer=me)
                    if self.shutdown_reason is not None:
                        raise PeerError(
                            f"transport of {me!r} stopped ({self.shutdown_reason}) while waiting for {tag!r} from {sender!r}",
                            peer=sender,
                        )
                    now = time.monotonic()
                    if now >= deadline:
                        raise PeerError(f"timed out after {timeout:g}s waiting for {tag!r} from {sender!r}", peer=sender)
                    if idle is not None and now >= next_idle:
                        break
                    self.cv.wait(min(deadline, next_idle if idle is not None else deadline, now + 1.0) - now)
            idle()  # outside the lock; raises PeerError when the peer is gone
            next_idle = time.monotonic() + idle_every

