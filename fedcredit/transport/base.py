"""The Channel: typed, tagged, one-shot messages between named parties.

Protocols talk only to a :class:`Channel`; it serializes payloads with
:mod:`fedcredit.transport.serde`, namespaces tags, rejects a tag used twice in
either direction, counts bytes per peer and message kind, and hands raw bytes
to a :class:`Backend` (in-memory for tests, gRPC with mTLS in production).

Tags are hierarchical: ``channel.sub("sbt", "tree-3").send("bank", "node-5/hist", h)``
sends under ``sbt/tree-3/node-5/hist``. A tag names exactly one message from
one sender to one receiver; reusing it is a :class:`ProtocolError` (a typo or
a replay shows up as an error, not as a hang).
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import PeerError, ProtocolError
from . import serde

__all__ = ["Backend", "Channel", "ChannelStats", "DEFAULT_TIMEOUT", "tag_kind"]

DEFAULT_TIMEOUT = 600.0
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:=\-]+(/[A-Za-z0-9_.:=\-]+)*$")
_INDEX_RE = re.compile(r"-\d+")


def tag_kind(tag: str) -> str:
    """Message kind of a tag: the tag with iteration indexes removed (``tree-3/node-5/hist`` → ``tree/node/hist``)."""
    return _INDEX_RE.sub("", tag)


class Backend(ABC):
    """Moves opaque bytes; knows nothing of payload types.

    Implementations must deliver each ``(sender, receiver, tag)`` at most once
    and raise :class:`PeerError` naming the peer on timeout or disconnect.
    """

    party: str
    peers: tuple[str, ...]

    @abstractmethod
    def send_bytes(self, peer: str, tag: str, payload: bytes) -> None: ...

    @abstractmethod
    def recv_bytes(self, peer: str, tag: str, timeout: float) -> bytes: ...

    def abort(self, reason: str) -> None:
        """Tell peers this party has failed, so their pending receives end with ``reason``."""

    def close(self) -> None:
        """Release resources."""


@dataclass
class ChannelStats:
    """Bytes and message counts per (direction, peer, kind)."""

    bytes: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, direction: str, peer: str, kind: str, n: int) -> None:
        self.bytes[(direction, peer, kind)] += n
        self.messages[(direction, peer, kind)] += 1

    def total(self, direction: str | None = None, peer: str | None = None) -> int:
        return sum(v for (d, p, _), v in self.bytes.items() if direction in (None, d) and peer in (None, p))

    def as_rows(self) -> list[dict]:
        return [
            {"direction": d, "peer": p, "kind": k, "bytes": b, "messages": self.messages[(d, p, k)]}
            for (d, p, k), b in sorted(self.bytes.items())
        ]


class _Shared:
    def __init__(self, backend: Backend, default_timeout: float):
        self.backend = backend
        self.default_timeout = default_timeout
        self.lock = threading.Lock()
        self.sent: set[tuple[str, str]] = set()
        self.received: set[tuple[str, str]] = set()
        self.stats = ChannelStats()
        self.taps: list[Callable[[str, str, str, bytes], None]] = []
        self.last = threading.local()  # per thread: the peer whose message it received last
        self.last_any: str | None = None


class Channel:
    """Send and receive payload objects to and from named peers.

    Parameters
    ----------
    backend : Backend
        Moves the bytes (``MemoryBackend`` or ``GrpcBackend``).
    default_timeout : float, default=600
        Seconds ``recv`` waits when no timeout is given.
    """

    def __init__(self, backend: Backend, *, default_timeout: float = DEFAULT_TIMEOUT, _shared=None, _ns: str = ""):
        self._s = _shared or _Shared(backend, default_timeout)
        self._ns = _ns

    # -- identity -----------------------------------------------------------
    @property
    def party(self) -> str:
        """This party's name."""
        return self._s.backend.party

    @property
    def peers(self) -> tuple[str, ...]:
        """Names of the parties this channel may talk to."""
        return tuple(self._s.backend.peers)

    @property
    def namespace(self) -> str:
        return self._ns

    @property
    def stats(self) -> ChannelStats:
        return self._s.stats

    def sub(self, *parts: str | int) -> "Channel":
        """A view of this channel whose tags are prefixed with ``parts``."""
        prefix = "/".join(str(p) for p in parts)
        self._check_tag(prefix)
        ns = f"{self._ns}/{prefix}" if self._ns else prefix
        return Channel(self._s.backend, _shared=self._s, _ns=ns)

    def tap(self, fn: Callable[[str, str, str, bytes], None]) -> None:
        """Call ``fn(sender, receiver, tag, payload_bytes)`` for every message sent (tests capture traffic with it)."""
        self._s.taps.append(fn)

    # -- messaging ----------------------------------------------------------
    def send(self, peer: str, tag: str, obj) -> None:
        """Send ``obj`` to ``peer`` under ``tag`` (once per tag and peer)."""
        full = self._full(peer, tag)
        with self._s.lock:
            if (peer, full) in self._s.sent:
                raise ProtocolError(f"tag {full!r} already sent to {peer!r}")
            self._s.sent.add((peer, full))
        payload = serde.encode(obj)
        self._s.stats.add("sent", peer, tag_kind(full), len(payload))
        for fn in self._s.taps:
            fn(self.party, peer, full, payload)
        self._s.backend.send_bytes(peer, full, payload)

    def broadcast(self, peers: Iterable[str], tag: str, obj) -> None:
        """Send the same ``obj`` to several peers (serialized once per peer)."""
        for p in peers:
            self.send(p, tag, obj)

    def recv(self, peer: str, tag: str, timeout: float | None = None):
        """Wait for the message ``tag`` from ``peer`` and return its payload object.

        Raises
        ------
        PeerError
            The peer failed, disconnected, or nothing arrived within ``timeout``.
        ProtocolError
            The tag was already received, or the payload is malformed.
        """
        full = self._full(peer, tag)
        with self._s.lock:
            if (peer, full) in self._s.received:
                raise ProtocolError(f"tag {full!r} already received from {peer!r}")
            self._s.received.add((peer, full))
        payload = self._s.backend.recv_bytes(peer, full, self._s.default_timeout if timeout is None else timeout)
        self._s.stats.add("received", peer, tag_kind(full), len(payload))
        self._s.last.peer = self._s.last_any = peer
        try:
            return serde.decode(payload)
        except ProtocolError as exc:
            raise ProtocolError(f"{tag!r} from peer {peer!r}: {exc}") from None

    def last_sender(self) -> str | None:
        """The peer of the last message received (by this thread if it received any, else by any thread).

        A step that fails on a malformed payload names this peer in its reason.
        """
        return getattr(self._s.last, "peer", None) or self._s.last_any

    def gather(self, peers: Iterable[str], tag: str, timeout: float | None = None) -> dict[str, object]:
        """Receive ``tag`` from each of ``peers``; returns ``{peer: obj}``."""
        return {p: self.recv(p, tag, timeout) for p in peers}

    def abort(self, reason: str) -> None:
        """Tell every peer this party failed (their pending receives raise ``PeerError``)."""
        self._s.backend.abort(reason)

    def close(self) -> None:
        self._s.backend.close()

    # -- helpers ------------------------------------------------------------
    def _full(self, peer: str, tag: str) -> str:
        if peer == self.party:
            raise ProtocolError(f"party {peer!r} cannot message itself")
        if peer not in self.peers:
            raise PeerError(f"{peer!r} is not a peer of {self.party!r} (peers: {', '.join(self.peers)})", peer=peer)
        self._check_tag(tag)
        return f"{self._ns}/{tag}" if self._ns else tag

    @staticmethod
    def _check_tag(tag: str) -> None:
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag) or any(part in (".", "..") for part in tag.split("/")):
            raise ProtocolError(f"invalid tag {tag!r}: use '/'-separated parts of [A-Za-z0-9_.:=-]")
