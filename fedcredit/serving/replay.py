"""Replay protection for scoring requests that survives a restart.

A host answers each ``(requester, request id)`` once. The LR masks are derived
from the request (:func:`~fedcredit.protocols.scoring.spec.request_transcript`),
so answering one request id twice would let the guest subtract two replies
of different rows and remove the masks; the cache of ids seen must therefore
outlive the process. It lives in ``<state_dir>/scoring_replay.sqlite`` (its own
file, mode 0600, WAL, synchronous=NORMAL): an id is committed to the WAL (in the
operating system's hands) before the request is answered, so a host process
that is killed (even ``kill -9``) or crashes and restarts still refuses it. Only
a crash of the whole machine within the last checkpoint interval can lose the
newest ids; a restarted machine is also a restarted clock for requests older
than the 5-minute window, and FULL (an fsync per request, as much as the audit
append itself; measured in docs/scoring.md) was not worth that residue.

Bounded and expiring: an id is kept until it would be refused as stale anyway
(its own timestamp + :data:`~fedcredit.protocols.scoring.spec.REQUEST_MAX_AGE`;
ids more than 60 s in the future are refused outright), so at most
``requests per minute x 6`` ids per requester are held. Ids reach the cache
only after the requester's authorization and rate limit passed. Beyond
``max_entries`` live ids the cache refuses new requests (fail closed: evicting
a live id would reopen its replay).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError, PolicyError, ProtocolError
from ..protocols.scoring import spec

__all__ = ["ReplayCache", "REPLAY_FILE", "MAX_ENTRIES"]

#: File of the cache under the party's state directory.
REPLAY_FILE = "scoring_replay.sqlite"
#: Live request ids kept at most (all requesters); beyond it new requests are refused until ids expire.
MAX_ENTRIES = 200_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    requester  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model      TEXT NOT NULL,
    expires    REAL NOT NULL,
    PRIMARY KEY (requester, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
"""


class ReplayCache:
    """Request ids a host has answered, per requester, persisted until they expire.

    Parameters
    ----------
    path : path
        The SQLite file (created, mode 0600, if absent).
    max_age : float, default=spec.REQUEST_MAX_AGE
        Seconds a request id is acceptable after its timestamp.
    max_entries : int, default=MAX_ENTRIES
    clock : callable, default=time.time
        Wall clock (request ids carry wall-clock milliseconds); injected for tests.
    """

    def __init__(self, path: str | Path, *, max_age: float = spec.REQUEST_MAX_AGE, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.max_age, self.max_entries, self.clock = float(max_age), int(max_entries), clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: each id is in the WAL before the request is answered, so a killed process does not reopen
            # it; FULL added an fsync per request (as costly as the audit append's) for machine crashes only
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: unreadable scoring replay cache ({exc}); move it aside and restart "
                            f"after {int(self.max_age)} s (ids older than that are refused anyway)") from None
        self._next_purge = 0.0
        self._count = self._purge(self.clock())

    def close(self) -> None:
        """Close the file; a later :meth:`add` is refused (the party is stopping)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        with self._lock:
            return self._purge(self.clock()) if self._db is not None else 0

    def _purge(self, now: float) -> int:
        """Drop expired ids; the number left."""
        self._db.execute("DELETE FROM seen WHERE expires < ?", (now,))
        self._next_purge = now + 1.0
        return int(self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    def add(self, requester: str, model_id: str, request_id: str) -> None:
        """Record ``request_id`` of ``requester``, or refuse it.

        ProtocolError for a malformed, stale or future-dated id, or one already
        used by this requester (replay); PolicyError when the cache is full.
        The id is committed before this returns.
        """
        now = self.clock()
        spec.check_request_id(request_id, now, self.max_age)
        expires = int(request_id.split("-", 1)[0], 16) / 1000.0 + self.max_age
        with self._lock:
            if self._db is None:
                raise PolicyError("the party is stopping; retry the request")
            if now >= self._next_purge or self._count >= self.max_entries:
                self._count = self._purge(now)
            if self._count >= self.max_entries:
                if self._db.execute("SELECT 1 FROM seen WHERE requester = ? AND request_id = ?",
                                    (requester, request_id)).fetchone():
                    raise ProtocolError(f"request id {request_id!r} was already used (replay)")
                raise PolicyError(f"too many recent scoring requests ({self._count}) held for replay protection; "
                                  f"retry later")
            try:
                self._db.execute("INSERT INTO seen (requester, request_id, model, expires) VALUES (?, ?, ?, ?)",
                                 (requester, request_id, model_id, expires))
            except sqlite3.IntegrityError:
                raise ProtocolError(f"request id {request_id!r} was already used (replay)") from None
            self._count += 1
