"""In-memory transport: all parties in one process (tests, simulation).

Payloads still go through serde, so what works here works on the wire, and
every message is recorded in :attr:`MemoryHub.captured` for privacy tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import FedcreditError, PeerError
from .base import DEFAULT_TIMEOUT, Backend, Channel

__all__ = ["MemoryHub", "MemoryBackend", "run_local"]

T = TypeVar("T")


class MemoryHub:
    """A set of parties that deliver to each other through shared memory.

    Attributes
    ----------
    captured : list of (sender, receiver, tag, payload_bytes)
        Every message sent, in send order.
    """

    def __init__(self, parties: Iterable[str]):
        self.parties = tuple(parties)
        if len(set(self.parties)) != len(self.parties):
            raise ValueError(f"duplicate party names in {self.parties}")
        self._cv = threading.Condition()
        self._boxes: dict[tuple[str, str, str], bytes] = {}
        self._failed: dict[str, str] = {}
        self.captured: list[tuple[str, str, str, bytes]] = []

    def backend(self, party: str, peers: Iterable[str] | None = None) -> "MemoryBackend":
        if party not in self.parties:
            raise ValueError(f"unknown party {party!r}")
        peers = tuple(p for p in (peers or self.parties) if p != party)
        return MemoryBackend(self, party, peers)

    def channel(self, party: str, *, default_timeout: float = DEFAULT_TIMEOUT) -> Channel:
        return Channel(self.backend(party), default_timeout=default_timeout)

    def sent_by(self, party: str) -> list[tuple[str, str, bytes]]:
        """(receiver, tag, payload) of every message ``party`` sent."""
        return [(r, t, p) for s, r, t, p in self.captured if s == party]

    def received_by(self, party: str) -> list[tuple[str, str, bytes]]:
        """(sender, tag, payload) of every message ``party`` received."""
        return [(s, t, p) for s, r, t, p in self.captured if r == party]

    def _put(self, src: str, dst: str, tag: str, payload: bytes) -> None:
        with self._cv:
            key = (src, dst, tag)
            if key in self._boxes:
                return  # idempotent: a retried message is delivered once
            self._boxes[key] = payload
            self.captured.append((src, dst, tag, payload))
            self._cv.notify_all()

    def _get(self, src: str, dst: str, tag: str, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        key = (src, dst, tag)
        with self._cv:
            while True:
                if key in self._boxes:
                    payload = self._boxes[key]
                    self._boxes[key] = b""  # keep the key: a re-delivery stays a no-op; free the memory
                    return payload
                if src in self._failed:
                    raise PeerError(f"peer {src!r} failed: {self._failed[src]}", peer=src)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"timed out after {timeout:g}s waiting for {tag!r} from {src!r}", peer=src)
                self._cv.wait(min(left, 1.0))

    def _fail(self, party: str, reason: str) -> None:
        with self._cv:
            self._failed[party] = reason
            self._cv.notify_all()


class MemoryBackend(Backend):
    def __init__(self, hub: MemoryHub, party: str, peers: tuple[str, ...]):
        self.hub, self.party, self.peers = hub, party, peers

    def send_bytes(self, peer: str, tag: str, payload: bytes) -> None:
        self.hub._put(self.party, peer, tag, payload)

    def recv_bytes(self, peer: str, tag: str, timeout: float) -> bytes:
        return self.hub._get(peer, self.party, tag, timeout)

    def abort(self, reason: str) -> None:
        self.hub._fail(self.party, reason)


def run_local(
    roles: dict[str, Callable[[Channel], T]],
    *,
    timeout: float = 120.0,
    hub: MemoryHub | None = None,
) -> dict[str, T]:
    """Run one function per party, each in its own thread with its own channel.

    Returns ``{party: result}``. If any party raises, its peers are told (their
    pending receives fail fast) and the first error is re-raised here.
    """
    hub = hub or MemoryHub(roles)
    results: dict[str, T] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, fn: Callable[[Channel], T]) -> None:
        ch = hub.channel(name, default_timeout=timeout)
        try:
            results[name] = fn(ch)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors[name] = exc
            ch.abort(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=item, name=f"party-{item[0]}", daemon=True) for item in roles.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    if errors:
        # prefer the root cause over the PeerErrors it triggered in the others
        root = [e for e in errors.values() if not isinstance(e, PeerError)] or list(errors.values())
        raise root[0]
    missing = [n for n in roles if n not in results]
    if missing:
        raise FedcreditError(f"parties {missing} did not finish within {timeout}s")
    return results
