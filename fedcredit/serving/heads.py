"""Audit heads that peers reported for themselves (DESIGN §5.5).

Each party keeps, per peer, the last heads ``(seq, hash)`` that peer reported
for its own log. ``fedcredit audit verify`` on that peer asks for them and checks
its log against them, so a party that truncates or rewrites its history is
caught from outside.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from ..errors import ProtocolError

__all__ = ["PeerHeads", "MAX_HEADS_PER_PEER", "fetch_held_heads"]

#: Heads kept per peer (oldest dropped first; the first head ever seen is always kept).
MAX_HEADS_PER_PEER = 64
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class PeerHeads:
    """A JSON file ``{peer: [[seq, hash], ...]}`` in the party's state dir; thread-safe."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._heads: dict[str, list[list]] = {}
        if self.path.exists():
            try:
                self._heads = {k: [list(x) for x in v] for k, v in json.loads(self.path.read_text()).items()}
            except (OSError, ValueError, AttributeError):
                self._heads = {}

    def record(self, peer: str, seq: int, hash_: str) -> None:
        """Store a head ``peer`` reported for its own log (ProtocolError if malformed or going backwards)."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not _HASH_RE.fullmatch(hash_ or ""):
            raise ProtocolError(f"malformed audit head from {peer!r}")
        with self._lock:
            lst = self._heads.setdefault(peer, [])
            if lst and [seq, hash_] == lst[-1]:
                return
            lst.append([seq, hash_])
            if len(lst) > MAX_HEADS_PER_PEER:
                del lst[1:len(lst) - MAX_HEADS_PER_PEER + 1]
            tmp = self.path.with_name(self.path.name + ".tmp")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._heads, sort_keys=True))
            os.replace(tmp, self.path)

    def held_for(self, peer: str) -> list[tuple[int, str]]:
        with self._lock:
            return [(int(s), str(h)) for s, h in self._heads.get(peer, [])]


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
