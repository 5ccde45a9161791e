"""Audit heads that peers reported for themselves (DESIGN §5.5).

Each party keeps, per peer, heads ``(seq, hash)`` that peer reported for its
own log. ``fedcredit audit verify`` on that peer asks for them and checks its
log against every one, so a party that truncates or rewrites its history is
caught from outside.

What is kept, and why
---------------------
A head ``(s, h)`` commits to the whole prefix ``1..s`` of the log (each record
hashes the previous one), so a rewrite of any record ``r <= s`` is detected by
that head. Keeping only the last N heads first-in-first-out is not enough: a
party that rewrites its log and then reports N fresh heads of the rewritten
chain pushes every genuine head out, and its rewritten log then verifies. So:

* **Heads only move forward.** A head older than the newest one held, or a
  different hash for the same ``seq``, is refused (:class:`ProtocolError`):
  a log never shrinks and a record never changes. The refusal is counted
  (``refused`` in the file) as evidence.
* **A ladder that is never flushed.** Sequence numbers are cut into buckets,
  eight per power of two (``[8·2^k, 9·2^k)``, ``[9·2^k, 10·2^k)``, ...; every
  number below 16 its own bucket), and the *first* head seen in each bucket is
  kept for good. Later heads never replace a ladder head, whatever the sender
  does, so a rewrite of any record before the current bucket stays detectable
  forever. The ladder holds at most ``16 + 8·log2(seq)`` heads (~250 for
  ``seq`` up to 10^9).
* **A recent ring that fills slowly.** The last :data:`RING_SIZE` heads,
  but at most one per :data:`RING_GAP_SECONDS`: heads sent faster are checked
  (they must move forward) and remembered only as the ``latest`` head. To flush
  a genuine head out of the ring a party needs ``RING_SIZE x RING_GAP_SECONDS``
  (over 20 minutes) of reports, and even then the ladder keeps the rest.
* The first head ever seen is kept.

So the size per peer is bounded, and a rewrite stays detectable unless it only
touches records after the start of the current ladder bucket (at most the
newest eighth of the log) *and* the party spent 20+ minutes flushing the ring.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path

from .._io import write_json_atomic
from ..errors import ProtocolError

__all__ = ["PeerHeads", "RING_SIZE", "RING_GAP_SECONDS", "ladder_bucket", "fetch_held_heads"]

log = logging.getLogger("fedcredit.serving")

#: Recent heads kept per peer (besides the ladder and the first head).
RING_SIZE = 128
#: At most one head per this many seconds enters the ring.
RING_GAP_SECONDS = 10.0
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def ladder_bucket(seq: int) -> int:
    """The start of ``seq``'s ladder bucket: ``seq`` below 16, else ``seq`` with all but its top 4 bits cleared."""
    k = seq.bit_length() - 4
    return seq if k <= 0 else (seq >> k) << k


class PeerHeads:
    """Per-peer heads in a JSON file in the party's state dir; thread-safe.

    Parameters
    ----------
    path : path
        The file (``peer_heads.json``).
    ring_gap : float, default=RING_GAP_SECONDS
        Seconds between two heads entering the recent ring.
    clock : callable, default=time.time
    """

    def __init__(self, path, *, ring_gap: float = RING_GAP_SECONDS, clock=time.time):
        self.path = Path(path)
        self.ring_gap = float(ring_gap)
        self._clock = clock
        self._lock = threading.Lock()
        self._peers: dict[str, dict] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._peers = {str(k): self._load(v) for k, v in raw.items()}
            except (OSError, ValueError, AttributeError, TypeError, KeyError, IndexError):
                log.warning("%s is unreadable; starting with no held heads", self.path)
                self._peers = {}

    @staticmethod
    def _load(v) -> dict:
        if isinstance(v, list):  # the old format: [[seq, hash], ...], oldest first
            st = {"first": None, "ladder": {}, "ring": [], "latest": None, "refused": 0}
            for s, h in v:
                PeerHeads._keep(st, int(s), str(h), 0.0, 0.0)
            return st
        return {"first": v["first"], "ladder": dict(v["ladder"]), "ring": [list(x) for x in v["ring"]],
                "latest": v["latest"], "refused": int(v.get("refused", 0))}

    @staticmethod
    def _keep(st: dict, seq: int, hash_: str, now: float, gap: float) -> None:
        head = [seq, hash_]
        st["latest"] = head
        if st["first"] is None:
            st["first"] = head
        st["ladder"].setdefault(str(ladder_bucket(seq)), head)
        ring = st["ring"]
        if not ring or now - ring[-1][2] >= gap or now < ring[-1][2]:
            ring.append([seq, hash_, now])
            del ring[:-RING_SIZE]

    def record(self, peer: str, seq: int, hash_: str) -> None:
        """Store a head ``peer`` reported for its own log.

        Raises
        ------
        ProtocolError
            Malformed, older than the newest head held, or a different hash for
            the newest ``seq`` held (the log was cut or rewritten).
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not _HASH_RE.fullmatch(hash_ or ""):
            raise ProtocolError(f"malformed audit head from {peer!r}")
        with self._lock:
            st = self._peers.setdefault(peer, {"first": None, "ladder": {}, "ring": [], "latest": None, "refused": 0})
            latest = st["latest"]
            if latest is not None:
                why = None
                if seq < latest[0]:
                    why = f"head #{seq} of {peer!r} is older than the head #{latest[0]} it reported before"
                elif seq == latest[0] and hash_ != latest[1]:
                    why = f"head #{seq} of {peer!r} differs from the head #{seq} it reported before"
                elif seq == latest[0]:
                    return
                if why is not None:
                    st["refused"] += 1
                    self._save()
                    if st["refused"] & (st["refused"] - 1) == 0:  # 1, 2, 4, 8...: evidence without a log flood
                        log.warning("%s: refused (%d so far); its audit log was cut or rewritten", why, st["refused"])
                    raise ProtocolError(f"{why}: refused (a log never shrinks and its records never change)")
            self._keep(st, seq, hash_, self._clock(), self.ring_gap)
            self._save()

    def _save(self) -> None:
        write_json_atomic(self.path, self._peers, sort_keys=True)

    def held_for(self, peer: str) -> list[tuple[int, str]]:
        """Every head of ``peer`` held (first, ladder, ring, latest), by ``seq``."""
        with self._lock:
            st = self._peers.get(peer)
            if st is None:
                return []
            heads = {(int(s), str(h)) for s, h in [st["first"], *st["ladder"].values(), st["latest"]] if s is not None}
            heads |= {(int(s), str(h)) for s, h, _ in st["ring"]}
        return sorted(heads)

    def refused(self, peer: str) -> int:
        """How many heads of ``peer`` were refused (older, or a changed record)."""
        with self._lock:
            return int(self._peers.get(peer, {}).get("refused", 0))


def fetch_held_heads(config, *, timeout: float = 5.0) -> dict[str, list[tuple[int, str]] | str]:
    """Ask every peer in ``config`` which heads of our log it holds (``{peer: heads or error message}``).

    Dials each peer directly with this party's certificate (the party process
    need not be running), so ``fedcredit audit verify`` can check this party's
    log against copies held outside it.
    """
    from ..certs import TlsFiles
    from ..errors import FedcreditError
    from ..transport.control import dial
    from ..transport.scoring import GovernanceClient

    tls = TlsFiles(config.tls.ca, config.tls.cert, config.tls.key) if config.tls else None
    out: dict[str, list[tuple[int, str]] | str] = {}
    for peer, addr in sorted(config.peers.items()):
        ch = dial(addr, target=peer, tls=tls, me=config.name)
        try:
            out[peer] = GovernanceClient(ch, peer, timeout=timeout).held_heads()
        except FedcreditError as exc:
            out[peer] = str(exc)
        finally:
            ch.close()
    return out
